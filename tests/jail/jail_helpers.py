"""Governed kernels started by the test's jupyter_server, driven as the server itself drives them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from governance_service import TOKENS  # type: ignore[import-not-found]

TIMEOUT = 90


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"token {TOKENS[user]}"}


@dataclass
class Ran:
    """What one execute request produced."""

    reply: dict[str, Any] = field(default_factory=dict)
    stdout: str = ""
    stderr: str = ""
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.reply.get("status"))

    @property
    def text(self) -> str:
        return self.stdout + self.stderr + json.dumps(self.reply) + json.dumps(self.errors)


async def start_kernel(jp_fetch: Any, user: str = "alice", name: str = "governed-python") -> str:
    response = await jp_fetch(
        "api", "kernels", method="POST", body=json.dumps({"name": name}), headers=auth(user)
    )
    return str(json.loads(response.body)["id"])


async def stop_kernel(jp_fetch: Any, kernel_id: str, user: str = "alice") -> None:
    await jp_fetch("api", "kernels", kernel_id, method="DELETE", headers=auth(user))


async def restart_kernel(jp_fetch: Any, kernel_id: str, user: str = "alice") -> None:
    await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body="", headers=auth(user))


async def run(jp_serverapp: Any, kernel_id: str, code: str, timeout: float = TIMEOUT) -> Ran:
    """Execute ``code`` in the kernel over its channels (the server's own connection)."""
    client = jp_serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    ran = Ran()
    try:
        await client.wait_for_ready(timeout=timeout)
        msg_id = client.execute(code)
        while True:
            msg = await client.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    ran.stdout += content["text"]
                else:
                    ran.stderr += content["text"]
            elif kind == "error":
                ran.errors.append(content)
            elif kind == "status" and content["execution_state"] == "idle":
                break
        while True:
            reply = await client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                ran.reply = reply["content"]
                return ran
    finally:
        client.stop_channels()


async def kernel_info(jp_serverapp: Any, kernel_id: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    client = jp_serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=timeout)
        msg_id = client.kernel_info()
        while True:
            reply = await client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                content: dict[str, Any] = reply["content"]
                return content
    finally:
        client.stop_channels()
