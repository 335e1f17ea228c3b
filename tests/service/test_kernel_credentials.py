"""A kernel started through the server gets its own credential, bound to the user who started it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from service_helpers import TOKENS, Api  # type: ignore[import-not-found]

import governed_kernel
from governed_server.store import kernel_credentials


@pytest.fixture
def governed_kernelspec(jp_data_dir: Path) -> None:
    """Install the kernelspec into the test's isolated Jupyter data dir (as pip does into sys.prefix)."""
    source = Path(governed_kernel.__file__).parent / "kernelspec"
    shutil.copytree(source, jp_data_dir / "kernels" / "governed-python")


async def run_in_kernel(jp_serverapp: Any, kernel_id: str, code: str) -> str:
    client = jp_serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        msg_id = client.execute(code)
        text = ""
        while True:
            msg = await client.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                text += msg["content"]["text"]
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return text
    finally:
        client.stop_channels()


async def test_kernel_gets_a_credential_for_its_user_and_loses_it_at_shutdown(
    governed_kernelspec: None, jp_fetch: Any, jp_serverapp: Any, api: Api, governance: Any
) -> None:
    response = await jp_fetch(
        "api", "kernels", method="POST", body=json.dumps({"name": "governed-python"}),
        headers={"Authorization": f"token {TOKENS['alice']}"},
    )  # fmt: skip
    kernel_id = json.loads(response.body)["id"]
    try:
        with governance.service.store.read() as connection:
            rows = connection.execute(
                kernel_credentials.select().where(kernel_credentials.c.kernel_id == kernel_id)
            ).all()
        assert [(row.username, row.revoked_at) for row in rows] == [("alice", None)]

        out = await run_in_kernel(
            jp_serverapp, kernel_id,
            "import os\n"
            "print(os.environ['GOVERNED_SERVICE_URL'])\n"
            "print(os.environ['GOVERNED_KERNEL_TOKEN'])",
        )  # fmt: skip
        url, token = out.split()
        assert url == governance.service_url()
        assert url.endswith("/governance/api/")
        assert rows[0].token_hash != token, "the store must keep a hash, not the token"

        status, body = await api(
            ("kernel", token), "POST", "kernel/audit", {"records": [{"event_type": "cell.start"}]}
        )
        assert status == 201, body
        _, listing = await api("dave", "GET", "audit", params={"kernel_id": kernel_id})
        assert {r["user"] for r in listing["records"]} == {"alice"}
        assert "cell.start" in {r["event_type"] for r in listing["records"]}
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")

    status, body = await api(
        ("kernel", token), "POST", "kernel/audit", {"records": [{"event_type": "cell.start"}]}
    )
    assert status == 403
    assert "revoked" in body["message"]


async def test_plain_python_kernels_get_no_credential(jp_fetch: Any, governance: Any) -> None:
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "echo"}))
    kernel_id = json.loads(response.body)["id"]
    try:
        with governance.service.store.read() as connection:
            rows = connection.execute(
                kernel_credentials.select().where(kernel_credentials.c.kernel_id == kernel_id)
            ).all()
        assert rows == []
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")
