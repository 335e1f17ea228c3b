"""The server masks kernel messages again: a kernel that does not mask cannot reach the browser with a PAN."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

PAN = "4111111111111111"


async def websocket_execute(
    jp_fetch: Any, jp_ws_fetch: Any, kernel_name: str, code: str
) -> list[dict[str, Any]]:
    """Start a kernel through the server, execute over the websocket, return the iopub messages."""
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": kernel_name}))
    kernel_id = json.loads(response.body)["id"]
    ws = await jp_ws_fetch("api", "kernels", kernel_id, "channels")
    session = uuid.uuid4().hex

    def request(msg_type: str, content: dict[str, Any]) -> str:
        msg_id = uuid.uuid4().hex
        ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "username": "test", "session": session,
                       "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [], "content": content,
        }))  # fmt: skip
        return msg_id

    # Like JupyterLab: ask for kernel_info until its iopub "idle" arrives, so iopub is subscribed.
    subscribed = False
    while not subscribed:
        info_id = request("kernel_info_request", {})
        try:
            while True:
                raw = await asyncio.wait_for(ws.read_message(), timeout=2)
                assert raw is not None, "websocket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") == info_id and msg.get("channel") == "iopub":
                    subscribed = True
                    break
        except asyncio.TimeoutError:
            continue
    content = {
        "code": code,
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": False,
    }
    msg_id = request("execute_request", content)
    messages: list[dict[str, Any]] = []
    replied = idle = False
    try:
        # iopub and shell are separate sockets: the reply can overtake the outputs, so wait for both.
        while not (replied and idle):
            raw = await asyncio.wait_for(ws.read_message(), timeout=60)
            assert raw is not None, "websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            messages.append(msg)
            replied = replied or msg["msg_type"] == "execute_reply"
            idle = idle or (msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle")
        return messages
    finally:
        ws.close()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_a_kernel_that_does_not_mask_is_masked_by_the_server(
    jp_fetch: Any, jp_ws_fetch: Any, governance: Any, api: Any
) -> None:
    # pytest-jupyter's echo kernel prints back the code it gets, and masks nothing.
    messages = await websocket_execute(jp_fetch, jp_ws_fetch, "echo", f"card {PAN} and {PAN[:4]} {PAN[4:]}")
    dump = json.dumps(messages)
    assert PAN not in dump
    streams = [m["content"]["text"] for m in messages if m["msg_type"] == "stream"]
    assert streams and "************1111" in streams[0]
    _, listing = await api("dave", "GET", "audit", params={"event_type": "guard.masked"})
    assert listing["records"], "a bypassed kernel masking must leave an audit record"
    assert listing["records"][0]["data"]["masking"]["pan"] >= 1
