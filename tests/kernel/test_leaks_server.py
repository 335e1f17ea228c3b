"""Leak suite through a real jupyter_server: the browser's path (websocket to /api/kernels/{id}/channels).

One server and one governed kernel (started by the server, credential injected by the
governed_server extension, observe-mode policy) for the whole walk over the output paths, because
pytest-jupyter's server is per test. Also checked: the server's log and whatever the kernel
wrote to its original stdout/stderr (inherited from this process, read with ``capfd``).
"""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from governance_service import TOKENS, write_test_policy  # type: ignore[import-not-found]
from jupyter_server.services.kernels.connection.base import deserialize_binary_message
from kernel_helpers import (  # type: ignore[import-not-found]
    AMEX,
    DISCOVER,
    MASTERCARD,
    PANS,
    VISA,
    assert_masked,
    assert_no_pan,
    history_rows,
)

import governed_kernel
from governed_server.identity_provider import NamedTokenIdentityProvider

V, M, A, D = VISA, MASTERCARD, AMEX, DISCOVER
ALICE = {"Authorization": f"token {TOKENS['alice']}"}


@pytest.fixture
def jp_server_config(tmp_path: Path) -> dict[str, Any]:
    policy = write_test_policy(tmp_path / "observe.yaml", mode="observe")
    return {
        "ServerApp": {
            "jpserver_extensions": {"governed_server": True},
            "identity_provider_class": NamedTokenIdentityProvider,
            "log_level": "DEBUG",
        },
        "NamedTokenIdentityProvider": {"users": {token: name for name, token in TOKENS.items()}},
        "GovernedServerApp": {
            "policy_path": str(policy),
            "db_url": f"sqlite:///{tmp_path / 'store' / 'governance.sqlite'}",
            "checkpoint_dir": str(tmp_path / "checkpoints"),
            "signing_key_path": str(tmp_path / "keys" / "audit.pem"),
        },
    }


@pytest.fixture
def kernel_setup(jp_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The governed kernelspec in the isolated data dir; the kernel's policy and IPYTHONDIR."""
    import shutil

    source = Path(governed_kernel.__file__).parent / "kernelspec"
    shutil.copytree(source, jp_data_dir / "kernels" / "governed-python")
    ipython_dir = tmp_path / "ipython"
    monkeypatch.setenv("IPYTHONDIR", str(ipython_dir))
    monkeypatch.setenv("GOVERNED_POLICY", str(tmp_path / "observe.yaml"))
    return ipython_dir


class Channels:
    """A websocket client speaking the JSON kernel protocol, as JupyterLab does."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.session = uuid.uuid4().hex

    async def request(
        self, msg_type: str, content: dict[str, Any], channel: str = "shell", stdin: str | None = None
    ) -> list[dict[str, Any]]:
        """Send a request; return every message of it (iopub, reply, stdin) until reply and idle."""
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id, "msg_type": msg_type, "username": "alice", "session": self.session,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "version": "5.3",
        }  # fmt: skip
        await self.ws.write_message(
            json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                        "channel": channel, "buffers": []})
        )  # fmt: skip
        messages: list[dict[str, Any]] = []
        replied = idle = False
        while not (replied and idle):
            raw = await asyncio.wait_for(self.ws.read_message(), 60)
            assert raw is not None, "websocket closed"
            msg = deserialize_binary_message(raw) if isinstance(raw, bytes) else json.loads(raw)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            messages.append(msg)
            if msg["msg_type"] == "input_request":
                await self.reply_input(msg, stdin or "")
            replied = replied or (msg["channel"] == channel and msg["msg_type"].endswith("_reply"))
            idle = idle or (msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle")
        return messages

    async def reply_input(self, request: dict[str, Any], value: str) -> None:
        header = {
            "msg_id": uuid.uuid4().hex, "msg_type": "input_reply", "username": "alice",
            "session": self.session, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "version": "5.3",
        }  # fmt: skip
        await self.ws.write_message(json.dumps({
            "header": header, "parent_header": request["header"], "metadata": {},
            "content": {"value": value}, "channel": "stdin", "buffers": [],
        }))  # fmt: skip

    async def execute(self, code: str, **extra: Any) -> list[dict[str, Any]]:
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": "stdin" in extra, "stop_on_error": True}  # fmt: skip
        stdin = extra.pop("stdin", None)
        content.update(extra)
        return await self.request("execute_request", content, stdin=stdin)


def visible(messages: list[dict[str, Any]], echo: bool = True) -> list[Any]:
    """What a frontend can see: contents, metadata, buffers, and each stream joined (``echo``:
    with the execute_input echo of the code)."""
    if not echo:
        messages = [m for m in messages if m["msg_type"] != "execute_input"]
    streams = {
        name: "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream"
                      and m["content"]["name"] == name)
        for name in ("stdout", "stderr")
    }  # fmt: skip
    return [*(m["content"] for m in messages), *(m["metadata"] for m in messages),
            *(m.get("buffers", []) for m in messages), *streams.values()]  # fmt: skip


CELLS: list[tuple[str, str, dict[str, Any]]] = [
    ("print", f"print('card {V}')", {}),
    (
        "split across flush",
        f"import sys, time\nprint('{M[:8]}', end='', flush=True)\ntime.sleep(0.3)\nprint('{M[8:]}')",
        {},
    ),
    ("fd write", f"import os\nos.write(1, b'fd {A}\\n')", {}),
    (
        "subprocess (observe-mode policy: no approval needed)",
        f"import subprocess\nsubprocess.run(['echo', '{D}'])",
        {},
    ),
    ("stderr + logging", f"import logging\nlogging.getLogger('x').error('card %s', '{V}')", {}),
    ("execute_result", f"{M}", {}),
    ("DataFrame", f"import pandas as pd\npd.DataFrame({{'c': {PANS[:5]!r}}}).style", {}),
    (
        "HTML update",
        "from IPython.display import display, HTML\n"
        f"h = display('x', display_id=True)\nh.update(HTML('{A}'))",
        {},
    ),
    ("error", f"raise ValueError('{D}')", {}),
    (
        "comm",
        f"from comm import create_comm\ncreate_comm(target_name='t', data={{'c': '{V}'}}, buffers=[b'{V}'])",
        {},
    ),
    ("input prompt", f"input('card {M}: ')", {"stdin": "ok"}),
    ("user_expressions", f"ue = '{A}'", {"user_expressions": {"e": "ue"}}),
    ("pager", f"def f():\n    '''{D}'''\nf?", {}),
    ("set_next_input", f"get_ipython().set_next_input('{V}')", {}),
]

PAN_OF = {"print": V, "split across flush": M, "fd write": A, "execute_result": M, "DataFrame": PANS[0],
          "HTML update": A, "error": D, "comm": V, "input prompt": M, "user_expressions": A, "pager": D,
          "set_next_input": V, "stderr + logging": V}  # fmt: skip


async def test_every_path_through_the_server_websocket(
    kernel_setup: Path,
    jp_fetch: Any,
    jp_ws_fetch: Any,
    jp_serverapp: Any,
    jp_logging_stream: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "governed-python"}),
                              headers=dict(ALICE))  # fmt: skip
    kernel_id = json.loads(response.body)["id"]
    ws = await jp_ws_fetch("api", "kernels", kernel_id, "channels", headers=dict(ALICE))
    channels = Channels(ws)
    try:
        info = await channels.request("kernel_info_request", {})
        for name, code, extra in CELLS:
            messages = await channels.execute(code, **extra)
            reply = next(m for m in messages if m["msg_type"] == "execute_reply")
            expected = "error" if name == "error" else "ok"
            assert reply["content"]["status"] == expected, (name, reply["content"])
            assert_masked(visible(messages), PAN_OF.get(name, D), where=f"websocket: {name}",
                          shown=visible(messages, echo=False))  # fmt: skip
        shell = [
            ("inspect_request", {"code": "ue", "cursor_pos": 2, "detail_level": 0}, A),
            ("complete_request", {"code": "d['", "cursor_pos": 3}, V),
            ("history_request", {"hist_access_type": "tail", "n": 50, "output": True, "raw": True}, V),
        ]
        await channels.execute(f"d = {{'{V}': 1}}")
        for msg_type, content, pan in shell:
            messages = await channels.request(msg_type, content)
            assert_masked(visible(messages), pan, where=f"websocket: {msg_type}")
        assert_no_pan(json.dumps(visible(info)), where="kernel_info")
        await channels.execute("get_ipython().history_manager.writeout_cache()")
    finally:
        ws.close()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE", headers=dict(ALICE))

    assert_masked(history_rows(kernel_setup), V, where="history.sqlite (server kernel)")
    # The server masks what kernels send again (defence in depth) and marks what it had to mask: the
    # kernel's own audit records (code, outputs, findings, run-time violations) must never need it.
    store = jp_serverapp.web_app.settings["governed_server"].service.store
    with store.read() as connection:
        rows = connection.exec_driver_sql("SELECT body FROM audit_records")
        bodies = [json.loads(row[0]) for row in rows]
    assert any(b["event_type"] == "cell.end" for b in bodies), "no audit records: the check proves nothing"
    fixed_by_server = [
        (b["event_type"], b["data"]["ingest_masked"]) for b in bodies if b["data"].get("ingest_masked")
    ]
    assert not fixed_by_server, f"the kernel sent unmasked card numbers in audit records: {fixed_by_server}"
    server_log = jp_logging_stream.getvalue() + caplog.text
    assert server_log, "the server log is empty: the check would prove nothing"
    assert_no_pan(server_log, where="server log")
    captured = capfd.readouterr()
    assert_no_pan(captured.out + captured.err, where="kernel's original stdout/stderr")
    assert A[-4:] in captured.out + captured.err, "the kernel's fd echo should be there, masked"
