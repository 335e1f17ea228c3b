"""A governed kernel started by jupyter_client with a credential for a test user, and its outputs."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

TIMEOUT = 90


@dataclass
class Execution:
    reply: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.reply["status"])

    @property
    def text(self) -> str:
        """Everything a person would read: streams, results, displays, errors."""
        parts = []
        for msg in self.messages:
            content = msg["content"]
            if msg["msg_type"] == "stream":
                parts.append(content["text"])
            elif msg["msg_type"] in ("execute_result", "display_data", "update_display_data"):
                parts.append(str(content["data"].get("text/plain", "")))
            elif msg["msg_type"] == "error":
                parts.append("\n".join(content["traceback"]))
        return "\n".join(parts)

    def statuses(self) -> list[str]:
        """States of the approval status display, in order (waiting, approved, denied, ended)."""
        states = []
        for msg in self.messages:
            html = msg["content"].get("data", {}).get("text/html", "") if "data" in msg["content"] else ""
            if 'class="jp-GovernedStatus"' in html:
                states.append(html.split('data-state="', 1)[1].split('"', 1)[0])
        return states


class GovernedKernel:
    def __init__(self, env: dict[str, str]) -> None:
        self.manager = KernelManager(kernel_name="governed-python")
        self.manager.start_kernel(env={**os.environ, **env})
        self.client: BlockingKernelClient = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=TIMEOUT)

    def execute(
        self, code: str, *, while_running: Callable[[list[dict[str, Any]]], None] | None = None
    ) -> Execution:
        """Run ``code``; ``while_running`` is called with the messages so far until the cell ends."""
        msg_id = self.client.execute(code)
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=0.2)
            except Exception:
                msg = None
            if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
                messages.append(msg)
            if while_running is not None:
                while_running(messages)
            assert time.monotonic() < deadline, "the cell did not finish"
        reply = self.client.get_shell_msg(timeout=TIMEOUT)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.client.get_shell_msg(timeout=TIMEOUT)
        return Execution(reply["content"], messages)

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel()  # graceful: the kernel delivers its last audit records


@contextmanager
def governed_kernel(service: Any, user: str = "alice", **env: str) -> Iterator[GovernedKernel]:
    kernel = GovernedKernel(service.kernel_env(user, **env))
    try:
        yield kernel
    finally:
        kernel.shutdown()


def unique(text: str = "") -> str:
    """A marker that makes a cell's source (and so its hash) new for this test."""
    return f"{text}{uuid.uuid4().hex[:10]}"


def when_waiting(
    service: Any, act: Callable[[dict[str, Any]], None]
) -> Callable[[list[dict[str, Any]]], None]:
    """A ``while_running`` callback: once the cell shows it is waiting, act on its pending request once."""
    done = threading.Event()

    def check(messages: list[dict[str, Any]]) -> None:
        if done.is_set():
            return
        for msg in messages:
            html = msg["content"].get("data", {}).get("text/html", "") if "data" in msg["content"] else ""
            if 'data-state="waiting"' in html:
                request_id = html.split('data-request-id="', 1)[1].split('"', 1)[0]
                request = service.request(request_id)
                assert request["status"] == "pending", request
                done.set()
                act(request)
                return

    return check


def cell_records(service: Any, marker: str, user: str = "alice", *, until: int = 0) -> list[dict[str, Any]]:
    """Audit records whose (masked) code contains ``marker``; waits until there are ``until`` of them.

    End-of-cell records travel with the next cell's start record or about 50 ms after the cell, so a
    test that looks right after a cell waits for them.
    """
    deadline = time.monotonic() + 15
    while True:
        records = [r for r in service.audit(user=user) if marker in r["data"].get("code", "")]
        if len(records) >= until or time.monotonic() > deadline:
            return records
        time.sleep(0.1)
