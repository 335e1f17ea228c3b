"""A kernel started through the server gets its own credential, bound to the user who started it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from service_helpers import TOKENS, Api  # type: ignore[import-not-found]

import governed_kernel
from governed_server.service.store import kernel_credentials


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
    finally:  # as the kernel's owner: nobody else may stop it
        await jp_fetch(
            "api",
            "kernels",
            kernel_id,
            method="DELETE",
            headers={"Authorization": f"token {TOKENS['alice']}"},
        )

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
    monkeypatch.setattr("governed_server.ids.uuid.uuid4", lambda: next(draws, None) or real())
    assert jp_serverapp.kernel_manager.new_kernel_id() == "0f1e2d3c-4b5a-4697-8877-665544332211"


def card_like_first(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make the next UUID drawn for a kernel id card-like; return the clean one drawn after it."""
    import uuid

    clean = "1a2b3c4d-5e6f-4a8b-9c0d-e1f2a3b4c5d6"
    draws = iter([uuid.UUID(CARD_LIKE_UUID), uuid.UUID(clean)])
    real = uuid.uuid4
    monkeypatch.setattr("governed_server.ids.uuid.uuid4", lambda: next(draws, None) or real())
    return clean


async def test_batch_kernel_ids_never_look_like_card_numbers_and_name_their_records(
    api: Api, governance: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``POST /credentials`` (what ``jupyter governance run --url`` uses) names a batch kernel; its
    records must carry that name unmasked, or an auditor's query by kernel id misses them."""
    clean = card_like_first(monkeypatch)
    status, minted = await api("alice", "POST", "credentials", {})
    assert status == 201, minted
    assert minted["kernel_id"] == f"batch-{clean}"
    record = {"event_type": "cell.start", "code": "x = 1", "cell_hash": ""}
    status, stored = await api(("kernel", minted["token"]), "POST", "kernel/audit", {"records": [record]})
    assert status == 201, stored
    logged = governance.service.audit.query(kernel_id=minted["kernel_id"])
    assert [r.origin["kernel_id"] for r in logged] == [minted["kernel_id"]]


def test_embedded_batch_runs_draw_ids_the_masker_leaves_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``jupyter governance run`` with its embedded service (no server URL) names its kernel too."""
    from governed_kernel.resources import default_policy_path
    from governed_server.ids import new_batch_kernel_id
    from governed_server.single_user.runner import _masker, embedded_service

    masker = _masker(None)
    many = {new_batch_kernel_id(masker) for _ in range(20_000)}
    assert len(many) == 20_000 and not any(masker.find(kernel_id) for kernel_id in many)
    clean = card_like_first(monkeypatch)
    db_url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with embedded_service(db_url, default_policy_path(), tmp_path) as access:
        assert access.kernel_id == f"batch-{clean}"


async def test_approval_request_ids_never_look_like_card_numbers(
    api: Api, governance: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request's id is in the audit records of the cell it lets run: masked, it would not match."""
    clean = card_like_first(monkeypatch)
    kernel = ("kernel", governance.service.credentials.mint("kernel-ids-request", "alice"))
    code = "!echo ids"
    body = {
        "cell_hash": hashlib.sha256(code.encode()).hexdigest(), "code": code,
        "policy_version": governance.service.policy.version, "notebook_path": "ids.ipynb",
        "rules": [{"id": "shell-commands", "action": "approve", "reason": "shell"}],
    }  # fmt: skip
    status, created = await api(kernel, "POST", "kernel/approvals", body)
    assert status == 201, created
    assert created["id"] == clean
