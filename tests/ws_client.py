"""A kernel websocket client for tests, speaking either protocol as JupyterLab would (v1 by default).

It does what a client that ignores the kernel's status would do: sends what it likes, reads
everything, and leaves waiting to the test.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)

V1 = "v1.kernel.websocket.jupyter.org"


def pack(value: Any) -> bytes:
    return json.dumps(value).encode()


@dataclass
class KernelSocket:
    ws: Any
    protocol: str | None
    session: str = field(default_factory=lambda: uuid.uuid4().hex)
    seen: list[dict[str, Any]] = field(default_factory=list)
    kernel_id: str = ""

    def send(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        channel: str = "shell",
        metadata: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
        username: str = "client",
    ) -> str:
        msg_id = uuid.uuid4().hex
        head = {"msg_id": msg_id, "msg_type": msg_type, "username": username, "session": self.session,
                "version": "5.4", "date": "", **(header or {})}  # fmt: skip
        parts = [head, {}, metadata or {}, content]
        if self.protocol == V1:
            self.ws.write_message(serialize_msg_to_ws_v1([pack(p) for p in parts], channel), binary=True)
        else:
            body = dict(zip(("header", "parent_header", "metadata", "content"), parts, strict=True))
            self.ws.write_message(json.dumps({**body, "channel": channel, "buffers": []}))
        return msg_id

    def execute(self, code: str, **extra: Any) -> str:
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": extra.pop("allow_stdin", False), **extra.pop("content", {})}  # fmt: skip
        return self.send("execute_request", content, **extra)

    async def read(self, timeout: float = 30) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.read_message(), timeout=timeout)
        assert raw is not None, "the websocket closed"
        if isinstance(raw, bytes):
            channel, parts = deserialize_msg_from_ws_v1(raw)
            header, parent, metadata, content = (json.loads(bytes(p)) for p in parts[:4])
            msg = {"channel": channel, "header": header, "parent_header": parent, "metadata": metadata,
                   "content": content}  # fmt: skip
        else:
            msg = json.loads(raw)
        msg["msg_type"] = msg["header"]["msg_type"]
        self.seen.append(msg)
        return msg

    async def until(
        self, done: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> list[dict[str, Any]]:
        """Read until ``done(msg)``; the messages read (all of them, whatever their parent)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        got: list[dict[str, Any]] = []
        while True:
            msg = await self.read(max(0.1, deadline - loop.time()))
            got.append(msg)
            if done(msg):
                return got

    async def finished(self, msg_id: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Everything that answers ``msg_id`` until both its reply and its idle status have arrived."""
        answers: list[dict[str, Any]] = [m for m in self.seen if _answers(m, msg_id)]
        state = {
            "reply": any(m["channel"] == "shell" for m in answers),
            "idle": any(_idle(m) for m in answers),
        }

        def done(msg: dict[str, Any]) -> bool:
            if _answers(msg, msg_id):
                answers.append(msg)
                state["reply"] = state["reply"] or msg["channel"] == "shell"
                state["idle"] = state["idle"] or _idle(msg)
            return state["reply"] and state["idle"]

        if not (state["reply"] and state["idle"]):
            await self.until(done, timeout)
        return answers

    async def ready(self) -> None:
        """Like JupyterLab: kernel_info until its iopub status arrives (iopub is then subscribed)."""
        while True:
            sent = self.send("kernel_info_request", {})

            def subscribed(msg: dict[str, Any], sent: str = sent) -> bool:
                return _answers(msg, sent) and msg["channel"] == "iopub"

            try:
                await self.until(subscribed, timeout=3)
                return
            except asyncio.TimeoutError:
                continue


def _answers(msg: dict[str, Any], msg_id: str) -> bool:
    return bool(msg.get("parent_header", {}).get("msg_id") == msg_id)


def _idle(msg: dict[str, Any]) -> bool:
    return bool(msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle")


def texts(messages: list[dict[str, Any]]) -> str:
    """The stream text and plain-text data of ``messages``, joined."""
    out = []
    for msg in messages:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(content["text"])
        elif msg["msg_type"] in ("execute_result", "display_data", "update_display_data"):
            out.append(content.get("data", {}).get("text/plain", ""))
        elif msg["msg_type"] == "error":
            out.append(f"{content['ename']}: {content['evalue']}")
    return "".join(out)


def outputs(messages: list[dict[str, Any]]) -> str:
    """Everything a cell showed (stream text, errors, results), as one string."""
    parts: list[str] = []
    for msg in messages:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            parts.append(content["text"])
        elif msg["msg_type"] == "error":
            parts.append(f"{content['ename']}: {content['evalue']}")
        elif msg["msg_type"] in ("execute_result", "display_data"):
            parts.append(json.dumps(content.get("data", {})))
    return "".join(parts)
