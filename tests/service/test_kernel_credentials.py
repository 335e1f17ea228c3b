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


CARD_LIKE_UUID = "9b2e4c1a-7d3f-4e5a-8c6b-501800000009"  # last group: a 12-digit Maestro number


async def test_kernel_ids_never_look_like_card_numbers(
    jp_serverapp: Any, governance: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel's id is in all its audit records, which the service masks: a UUID whose last group
    passes for a card number would be stored masked and its records would not match the kernel.
    The server's kernel manager draws again instead."""
    import uuid

    masker = governance.service.masker
    assert masker.mask_text(CARD_LIKE_UUID)[0] != CARD_LIKE_UUID, "the example must be card-like"
    draws = iter([uuid.UUID(CARD_LIKE_UUID), uuid.UUID("0f1e2d3c-4b5a-4697-8877-665544332211")])
    real = uuid.uuid4
    monkeypatch.setattr("governed_server.kernel_ids.uuid.uuid4", lambda: next(draws, None) or real())
    assert jp_serverapp.kernel_manager.new_kernel_id() == "0f1e2d3c-4b5a-4697-8877-665544332211"
