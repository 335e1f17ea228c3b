"""The approval API in a real jupyter_server: the whole life of a request, and its rules."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from service_helpers import Api, cell_request  # type: ignore[import-not-found]


def kernel_of(governance: Any, user: str, kernel_id: str = "kernel-1") -> tuple[str, str]:
    return ("kernel", governance.service.credentials.mint(f"{kernel_id}-{user}", user))


async def open_request(api: Api, governance: Any, kernel: tuple[str, str], code: str = "!ls /data") -> Any:
    status, body = await api(
        kernel, "POST", "kernel/approvals", cell_request(code, policy_version=version(governance))
    )
    assert status == 201, body
    assert body["status"] == "pending"
    return body


def version(governance: Any) -> str:
    return str(governance.service.policy.version)


async def test_request_approve_wait_and_use(api: Api, governance: Any) -> None:
    kernel = kernel_of(governance, "alice")
    request = await open_request(api, governance, kernel)
    assert request["requester"] == "alice"
    assert request["code"] == "!ls /data"
    assert request["rules"][0]["id"] == "shell-escape"

    status, listing = await api("bob", "GET", "approvals", params={"status": "pending"})
    assert status == 200
    assert [r["id"] for r in listing["requests"]] == [request["id"]]

    status, decided = await api(
        "bob",
        "POST",
        f"approvals/{request['id']}/decision",
        {"decision": "approve", "reason": "read-only listing"},
    )
    assert status == 200, decided
    assert decided["status"] == "approved"
    assert decided["decisions"][0]["approver"] == "bob"
    assert decided["decisions"][0]["reason"] == "read-only listing"

    status, waited = await api(kernel, "GET", f"kernel/approvals/{request['id']}/wait", params={"timeout": 5})
    assert (status, waited["status"]) == (200, "approved")
    status, used = await api(
        kernel, "POST", f"kernel/approvals/{request['id']}/use", {"cell_hash": request["cell_hash"]}
    )
    assert (status, used["uses"]) == (200, 1)


def start_record(cell_hash: str, approval_id: str) -> dict[str, Any]:
    return {"event_type": "cell.start", "event_id": "start-record-of-cell-1", "cell_hash": cell_hash,
            "code": "!ls /data", "approval_id": approval_id}  # fmt: skip


async def audit_kinds(api: Api, approval_id: str) -> list[str]:
    status, listing = await api("dave", "GET", "audit", params={"limit": 500})
    assert status == 200, listing
    ordered = sorted(listing["records"], key=lambda record: int(record["seq"]))
    return [r["event_type"] for r in ordered if r["data"].get("approval_id") == approval_id]


async def test_the_start_record_is_stored_with_the_use_or_not_at_all(api: Api, governance: Any) -> None:
    """One call uses the approval and stores the cell's start record, in one transaction."""
    kernel = kernel_of(governance, "alice")
    request = await open_request(api, governance, kernel)
    await api("bob", "POST", f"approvals/{request['id']}/decision", {"decision": "approve", "reason": "ok"})
    use = f"kernel/approvals/{request['id']}/use"
    wrong = cell_request("!rm -rf /data", policy_version=version(governance))["cell_hash"]
    start = start_record(request["cell_hash"], request["id"])
    status, _ = await api(
        kernel, "POST", use, {"cell_hash": wrong, "records": [{**start, "cell_hash": wrong}]}
    )
    assert status == 409  # refused: neither the use nor the start record is stored
    malformed = {**start, "event_type": "approval.decided"}  # kernels cannot write approval records
    status, _ = await api(kernel, "POST", use, {"cell_hash": request["cell_hash"], "records": [malformed]})
    assert status == 400
    # Only the approved cell's start record rides on the use: not another cell's, not a second record.
    for records in (
        [{**start, "cell_hash": wrong}],
        [{**start, "approval_id": None}],
        [{**start, "event_type": "cell.end"}],
        [start, {**start, "event_id": "start-record-of-cell-2"}],
    ):
        status, body = await api(kernel, "POST", use, {"cell_hash": request["cell_hash"], "records": records})
        assert status == 400, body
    assert "cell.start" not in await audit_kinds(api, request["id"])
    status, used = await api(kernel, "POST", use, {"cell_hash": request["cell_hash"], "records": [start]})
    assert (status, used["uses"], len(used["records"])) == (200, 1, 1)
    kinds = await audit_kinds(api, request["id"])
    assert kinds[-2:] == ["approval.used", "cell.start"], kinds
    status, listing = await api("dave", "GET", "audit", params={"limit": 500})
    [stored] = [r for r in listing["records"] if r["event_type"] == "cell.start"]
    assert (stored["user"], stored["seq"]) == ("alice", used["records"][0]["seq"])


async def test_nobody_approves_their_own_request_not_even_an_approver(api: Api, governance: Any) -> None:
    request = await open_request(api, governance, kernel_of(governance, "erin"))
    status, body = await api(
        "erin", "POST", f"approvals/{request['id']}/decision", {"decision": "approve", "reason": "mine"}
    )
    assert status == 403
    assert "own request" in body["message"]
    status, still = await api("bob", "GET", f"approvals/{request['id']}")
    assert still["status"] == "pending"


@pytest.mark.parametrize("who", ["alice", "mallory", "dave"])
async def test_only_approvers_decide(api: Api, governance: Any, who: str) -> None:
    request = await open_request(api, governance, kernel_of(governance, "erin"))
    status, body = await api(
        who, "POST", f"approvals/{request['id']}/decision", {"decision": "approve", "reason": "ok"}
    )
    assert status == 403, body
    assert "not an approver" in body["message"]


async def test_an_approver_from_a_configured_group_can_decide(api: Api, governance: Any) -> None:
    request = await open_request(api, governance, kernel_of(governance, "alice"))
    status, body = await api(
        "carol", "POST", f"approvals/{request['id']}/decision", {"decision": "deny", "reason": "no"}
    )
    assert (status, body["status"]) == (200, "denied")


async def test_a_decided_request_cannot_be_decided_again(api: Api, governance: Any) -> None:
    request = await open_request(api, governance, kernel_of(governance, "alice"))
    path = f"approvals/{request['id']}/decision"
    assert (await api("bob", "POST", path, {"decision": "deny", "reason": "exfiltration risk"}))[0] == 200
    status, body = await api("carol", "POST", path, {"decision": "approve", "reason": "fine"})
    assert status == 409
    assert "already denied" in body["message"]


async def test_denied_request_cannot_be_used(api: Api, governance: Any) -> None:
    kernel = kernel_of(governance, "alice")
    request = await open_request(api, governance, kernel)
    await api("bob", "POST", f"approvals/{request['id']}/decision", {"decision": "deny", "reason": "no"})
    status, body = await api(
        kernel, "POST", f"kernel/approvals/{request['id']}/use", {"cell_hash": request["cell_hash"]}
    )
    assert status == 409
    assert "denied" in body["message"]


async def test_an_edited_cell_needs_a_new_approval(api: Api, governance: Any) -> None:
    kernel = kernel_of(governance, "alice")
    request = await open_request(api, governance, kernel, "!ls /data")
    await api("bob", "POST", f"approvals/{request['id']}/decision", {"decision": "approve", "reason": "ok"})
    edited = cell_request("!rm -rf /data", policy_version=version(governance))
    status, body = await api(
        kernel, "POST", f"kernel/approvals/{request['id']}/use", {"cell_hash": edited["cell_hash"]}
    )
    assert status == 409
    assert "changed" in body["message"]
    status, fresh = await api(kernel, "POST", "kernel/approvals", edited)
    assert (status, fresh["status"]) == (201, "pending")
    assert fresh["id"] != request["id"]


async def test_an_approval_is_reused_within_its_window_then_ends(api: Api, governance: Any) -> None:
    kernel = kernel_of(governance, "alice")
    request = await open_request(api, governance, kernel)
    await api(
        "bob", "POST", f"approvals/{request['id']}/decision", {"decision": "approve", "reason": "iterating"}
    )
    body = cell_request(policy_version=version(governance))
    status, again = await api(kernel, "POST", "kernel/approvals", body)
    assert (status, again["id"], again["status"]) == (200, request["id"], "approved")
    for expected_uses in (1, 2):
        status, used = await api(
            kernel, "POST", f"kernel/approvals/{request['id']}/use", {"cell_hash": body["cell_hash"]}
        )
        assert (status, used["uses"]) == (200, expected_uses)

    service = governance.service
    real_clock = service.approvals.clock
    service.approvals.clock = lambda: real_clock() + timedelta(minutes=61)
    status, late = await api(
        kernel, "POST", f"kernel/approvals/{request['id']}/use", {"cell_hash": body["cell_hash"]}
    )
    assert status == 409
    assert "window" in late["message"]
    status, renewed = await api(kernel, "POST", "kernel/approvals", body)
    assert (status, renewed["status"]) == (201, "pending")


async def test_another_users_approval_is_not_reused(api: Api, governance: Any) -> None:
    alice = kernel_of(governance, "alice")
    request = await open_request(api, governance, alice)
    await api("bob", "POST", f"approvals/{request['id']}/decision", {"decision": "approve", "reason": "ok"})
    erin = kernel_of(governance, "erin")
    status, body = await api(
        erin, "POST", "kernel/approvals", cell_request(policy_version=version(governance))
    )
    assert (status, body["status"], body["requester"]) == (201, "pending", "erin")
    status, _refused = await api(
        erin, "POST", f"kernel/approvals/{request['id']}/use", {"cell_hash": request["cell_hash"]}
    )
    assert status == 403


async def test_pending_requests_expire(api: Api, governance: Any) -> None:
    kernel = kernel_of(governance, "alice")
    request = await open_request(api, governance, kernel)
    service = governance.service
    real_clock = service.approvals.clock
    service.approvals.clock = lambda: real_clock() + timedelta(minutes=31)
    status, waited = await api(kernel, "GET", f"kernel/approvals/{request['id']}/wait", params={"timeout": 1})
    assert (status, waited["status"]) == (200, "expired")
    status, body = await api(
        "bob", "POST", f"approvals/{request['id']}/decision", {"decision": "approve", "reason": "late"}
    )
    assert status == 409
    assert "expired" in body["message"]


async def test_the_requester_cancels_nobody_else(api: Api, governance: Any) -> None:
    kernel = kernel_of(governance, "alice")
    request = await open_request(api, governance, kernel)
    status, body = await api("bob", "POST", f"approvals/{request['id']}/cancel")
    assert status == 403
    other_kernel = kernel_of(governance, "alice", kernel_id="kernel-2")
    status, body = await api(other_kernel, "POST", f"kernel/approvals/{request['id']}/cancel")
    assert status == 403
    status, body = await api("alice", "POST", f"approvals/{request['id']}/cancel")
    assert (status, body["status"]) == (200, "cancelled")
    status, body = await api(kernel, "POST", f"kernel/approvals/{request['id']}/cancel")
    assert status == 409


async def test_a_request_from_an_old_policy_version_is_refused(api: Api, governance: Any) -> None:
    kernel = kernel_of(governance, "alice")
    status, body = await api(
        kernel, "POST", "kernel/approvals", cell_request(policy_version="sha256:" + "0" * 64)
    )
    assert status == 409
    assert "restart the kernel" in body["message"]


async def test_analysts_see_only_their_own_requests(api: Api, governance: Any) -> None:
    await open_request(api, governance, kernel_of(governance, "alice"), "!whoami")
    await open_request(api, governance, kernel_of(governance, "erin"), "!date")
    status, mine = await api("alice", "GET", "approvals")
    assert status == 200
    assert {r["requester"] for r in mine["requests"]} == {"alice"}
    status, _body = await api("alice", "GET", "approvals", params={"requester": "erin"})
    assert status == 403
    status, everything = await api("dave", "GET", "approvals")
    assert {r["requester"] for r in everything["requests"]} == {"alice", "erin"}
    erin_request = next(r for r in everything["requests"] if r["requester"] == "erin")
    assert (await api("alice", "GET", f"approvals/{erin_request['id']}"))[0] == 403
    assert (await api("erin", "GET", f"approvals/{erin_request['id']}"))[0] == 200


async def test_decisions_are_pushed_as_events(api: Api, governance: Any, jp_serverapp: Any) -> None:
    from governed_server.events import APPROVAL_SCHEMA

    seen: list[dict[str, Any]] = []

    async def listener(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        seen.append(data)

    jp_serverapp.event_logger.add_listener(schema_id=APPROVAL_SCHEMA, listener=listener)
    request = await open_request(api, governance, kernel_of(governance, "alice"))
    await api("bob", "POST", f"approvals/{request['id']}/decision", {"decision": "approve", "reason": "ok"})
    await jp_serverapp.event_logger.gather_listeners()
    assert [(e["action"], e["status"]) for e in seen] == [("requested", "pending"), ("decided", "approved")]
    assert all("code" not in e for e in seen)


async def test_approvers_never_see_a_card_number_a_kernel_sent_unmasked(api: Api, governance: Any) -> None:
    """A tampered (or buggy) kernel sends a request whose code, rules and path hold a test PAN: what is
    stored and shown to approvers is masked by the server, and the cell hash still binds the code."""
    pan = "4111111111111111"
    kernel = kernel_of(governance, "alice")
    body = cell_request(
        f"!echo {pan}", notebook_path=f"cards/{pan}.ipynb", policy_version=version(governance)
    )
    body["rules"][0]["reason"] = f"runs a shell command with {pan}"
    status, request = await api(kernel, "POST", "kernel/approvals", body)
    assert status == 201, request
    status, shown = await api("bob", "GET", f"approvals/{request['id']}")
    assert status == 200
    for text in (json.dumps(request), json.dumps(shown)):
        assert pan not in text
    assert shown["code"].endswith(pan[-4:]) and pan[-4:] in shown["rules"][0]["reason"]


async def test_rule_spans_keep_their_numbers_and_reasons_are_masked(api: Api, governance: Any) -> None:
    """The span key ends in "pan" like a card column; its numbers are positions, never masked."""
    kernel = kernel_of(governance, "alice", "kernel-spans")
    span = {"line": 12, "column": 5, "end_line": 12, "end_column": 40}
    rule = {"id": "shell-commands", "action": "approve", "span": span,
            "reason": "runs `echo 4111 1111 1111 1111`", "pci": ["10.2.1"]}  # fmt: skip
    body = cell_request("!echo hello", policy_version=version(governance), rules=[rule])
    status, created = await api(kernel, "POST", "kernel/approvals", body)
    assert status == 201, created
    status, shown = await api("bob", "GET", f"approvals/{created['id']}")
    assert status == 200
    assert shown["rules"][0]["span"] == span
    assert "4111 1111 1111 1111" not in shown["rules"][0]["reason"]
    assert shown["rules"][0]["reason"].endswith("1111`")


@pytest.mark.parametrize(
    "span",
    [{"line": 4111111111111111}, {"line": "3"}, {"line": -1}, {"line": 1, "extra": "4111111111111111"}],
)
async def test_a_span_that_is_not_a_position_is_refused(api: Api, governance: Any, span: Any) -> None:
    kernel = kernel_of(governance, "alice", "kernel-bad-span")
    rule = {"id": "shell-commands", "action": "approve", "span": span}
    body = cell_request("!echo hello", policy_version=version(governance), rules=[rule])
    status, answer = await api(kernel, "POST", "kernel/approvals", body)
    assert status == 400, answer
    assert "span" in answer["message"]
