"""Audit through the API: kernels ingest their own records, auditors read (recorded) and verify."""

from __future__ import annotations

import json
from typing import Any

import pytest
from service_helpers import Api, cell_request  # type: ignore[import-not-found]

PAN = "4111111111111111"


async def test_kernel_records_are_attributed_by_the_server_not_the_kernel(api: Api, governance: Any) -> None:
    kernel = ("kernel", governance.service.credentials.mint("k-alice", "alice"))
    records = [
        {"event_type": "cell.start", "cell_id": "c1", "code": "x = 1", "claimed_user": "ci-bot"},
        {
            "event_type": "cell.end",
            "cell_id": "c1",
            "outcome": "success",
            "output": "done",
            "masking": {"pan": 0},
        },
    ]
    status, body = await api(kernel, "POST", "kernel/audit", {"records": records})
    assert status == 201, body
    seqs = [r["seq"] for r in body["records"]]
    assert seqs == sorted(seqs) and len(seqs) == 2

    status, listing = await api("dave", "GET", "audit", params={"kernel_id": "k-alice"})
    assert status == 200
    stored = [r for r in listing["records"] if r["event_type"].startswith("cell.")]
    assert [r["event_type"] for r in stored] == ["cell.start", "cell.end"]
    assert {r["user"] for r in stored} == {"alice"}
    assert stored[0]["claimed_user"] == "ci-bot"
    assert stored[0]["origin"]["kernel_id"] == "k-alice"


async def test_a_pan_sent_by_a_kernel_never_reaches_the_store(api: Api, governance: Any) -> None:
    kernel = ("kernel", governance.service.credentials.mint("k-alice", "alice"))
    status, _ = await api(
        kernel, "POST", "kernel/audit", {"records": [{"event_type": "cell.end", "output": f"card {PAN}"}]}
    )
    assert status in (201, 400)
    _, listing = await api("dave", "GET", "audit", params={"limit": 1000})
    assert PAN not in str(listing)
    with governance.service.store.read() as connection:
        dump = "\n".join(str(tuple(row)) for row in connection.exec_driver_sql("SELECT * FROM audit_records"))
    assert PAN not in dump


async def test_reading_the_audit_log_is_itself_recorded(api: Api) -> None:
    await api("dave", "GET", "audit", params={"user": "alice"})
    _, listing = await api("dave", "GET", "audit", params={"event_type": "audit.read"})
    reads = listing["records"]
    assert reads, "audit.read records are missing"
    assert reads[0]["user"] == "dave"
    assert reads[0]["data"]["details"]["filters"]["user"] == "alice"


async def test_approval_transitions_are_in_the_chain_and_verify_passes(api: Api, governance: Any) -> None:
    kernel = ("kernel", governance.service.credentials.mint("k-alice", "alice"))
    _, request = await api(
        kernel, "POST", "kernel/approvals", cell_request(policy_version=governance.service.policy.version)
    )
    await api("bob", "POST", f"approvals/{request['id']}/decision", {"decision": "approve", "reason": "ok"})
    await api(kernel, "POST", f"kernel/approvals/{request['id']}/use", {"cell_hash": request["cell_hash"]})
    _, listing = await api("dave", "GET", "audit", params={"limit": 1000})
    kinds = [r["event_type"] for r in listing["records"] if r["data"].get("approval_id") == request["id"]]
    assert kinds == ["approval.requested", "approval.decided", "approval.used"]
    decided = next(r for r in listing["records"] if r["event_type"] == "approval.decided")
    assert decided["user"] == "bob"
    assert decided["data"]["details"]["reason"] == "ok"

    governance.service.audit.checkpoint()
    status, report = await api("dave", "GET", "audit/verify")
    assert status == 200
    assert report["ok"] is True, report
    assert report["valid"] == report["total"] >= 4


async def test_a_person_mints_and_revokes_a_batch_credential_for_themselves(
    api: Api, governance: Any
) -> None:
    status, minted = await api("alice", "POST", "credentials")
    assert status == 201
    assert minted["user"] == "alice" and minted["kernel_id"].startswith("batch-")
    kernel = ("kernel", minted["token"])
    status, _body = await api(kernel, "POST", "kernel/audit", {"records": [{"event_type": "cell.start"}]})
    assert status == 201
    _, listing = await api("dave", "GET", "audit", params={"kernel_id": minted["kernel_id"]})
    assert [r["user"] for r in listing["records"]] == ["alice"]

    assert (await api("bob", "DELETE", f"credentials/{minted['kernel_id']}"))[0] == 403
    status, revoked = await api("alice", "DELETE", f"credentials/{minted['kernel_id']}")
    assert (status, revoked["revoked"]) == (200, 1)
    assert (await api(kernel, "POST", "kernel/audit", {"records": [{"event_type": "cell.start"}]}))[0] == 403
    assert (await api("alice", "DELETE", "credentials/batch-unknown"))[0] == 404


async def test_refusals_never_quote_a_card_number(
    api: Api, governance: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Validation messages quote what was sent (jsonschema shows the offending value) and tornado logs
    every refused request's message: both are masked."""
    kernel = ("kernel", governance.service.credentials.mint("k-refused", "alice"))
    bad = [
        {"records": [{"event_type": "cell.start", "output_size": PAN}]},
        {"records": [{"event_type": f"cell.{PAN}x" * 3}]},
        {"records": [{"event_type": "cell.start", "cell_hash": f"{PAN}"}]},
    ]
    for body in bad:
        status, answer = await api(kernel, "POST", "kernel/audit", body)
        assert status == 400, answer
        assert PAN not in json.dumps(answer) and PAN[-4:] in json.dumps(answer)
    assert PAN not in caplog.text


async def test_a_kernel_batch_sent_again_is_stored_once_and_raises_no_false_alarm(
    api: Api, governance: Any
) -> None:
    """The kernel's answer was lost, so it sends the same batch again: one copy in the log, the
    same seqs in the answer, and the witness book does not take the copy for a request it never
    saw forwarded."""
    service = governance.service
    kernel = ("kernel", service.credentials.mint("k-retry", "alice"))
    service.witnesses.guards("k-retry")
    service.witnesses.forwarded("k-retry", "m-1", "alice")
    records = [
        {"event_type": "cell.start", "event_id": "start-of-m1-0000", "details": {"msg_id": "m-1"}},
        {"event_type": "cell.end", "event_id": "end-of-m1-000000", "details": {"msg_id": "m-1"}},
    ]
    first = await api(kernel, "POST", "kernel/audit", {"records": records})
    again = await api(kernel, "POST", "kernel/audit", {"records": records})
    assert first[0] == again[0] == 201
    assert again[1]["records"] == first[1]["records"]

    status, listing = await api("dave", "GET", "audit", params={"kernel_id": "k-retry", "limit": 100})
    assert status == 200
    kinds = [r["event_type"] for r in listing["records"]]
    assert kinds == ["cell.start", "cell.end"]
    assert [r["event_id"] for r in listing["records"]] == ["start-of-m1-0000", "end-of-m1-000000"]


async def test_a_kernel_cannot_reuse_the_event_id_of_another_kernels_record(
    api: Api, governance: Any
) -> None:
    service = governance.service
    alice = ("kernel", service.credentials.mint("k-a", "alice"))
    mallory = ("kernel", service.credentials.mint("k-m", "mallory"))
    record = {"event_type": "cell.start", "event_id": "alice-record-0001"}
    assert (await api(alice, "POST", "kernel/audit", {"records": [record]}))[0] == 201
    status, body = await api(mallory, "POST", "kernel/audit", {"records": [record]})
    assert status == 400 and "already the id of another record" in json.dumps(body)
    status, listing = await api("dave", "GET", "audit", params={"kernel_id": "k-m"})
    assert status == 200 and listing["records"] == []
