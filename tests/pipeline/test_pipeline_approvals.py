"""The governed kernel's gate, end to end: a real kernel, a real governance service, a real approver."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import (  # type: ignore[import-not-found]
    GovernedKernel,
    cell_records,
    governed_kernel,
    unique,
    when_waiting,
)

from governed_kernel.governor import HTTP_WARMUP_IDLE_S


def run_approved(kernel: Any, governance_service: Any, code: str) -> tuple[Any, list[dict[str, Any]]]:
    """Run ``code`` again while an approver approves the request it opens; the run and the requests."""
    seen: list[dict[str, Any]] = []

    def approve(request: dict[str, Any]) -> None:
        seen.append(request)
        governance_service.decide(request["id"], "approve", "scratch file")

    return kernel.execute(code, while_running=when_waiting(governance_service, approve)), seen


@pytest.fixture
def kernel(governance_service: Any) -> Any:
    with governed_kernel(governance_service, GOVERNED_APPROVAL_TIMEOUT="60") as running:
        yield running


def test_safe_cells_run_and_are_audited_start_then_end(kernel: Any, governance_service: Any) -> None:
    marker = unique("safe-")
    result = kernel.execute(f"value = {marker!r}\nprint(value)")
    assert result.status == "ok"
    assert marker in result.text
    records = cell_records(governance_service, marker, until=2)
    assert [r["event_type"] for r in records] == ["cell.start", "cell.end"]
    assert records[0]["seq"] < records[1]["seq"]
    assert records[1]["outcome"] == "success"
    assert records[1]["data"]["details"]["status"] == "ok"
    assert records[0]["resource"]["cell_hash"] == records[1]["resource"]["cell_hash"]


def test_an_idle_kernel_prepares_its_http_client_before_an_approval_needs_it(kernel: Any) -> None:
    """Approvals are the kernel's only HTTP calls: httpx and its TLS context are made while the
    kernel is idle, not between the approver's decision and the cell running."""
    time.sleep(HTTP_WARMUP_IDLE_S + 1.5)
    client = "get_ipython().kernel.governor.client"
    probe = f"import sys\nprint('prepared', 'httpx' in sys.modules, {client}._tls is not None)"
    result = kernel.execute(probe)
    assert "prepared True True" in result.text, result.text


def test_approved_cell_runs_and_shows_who_approved(kernel: Any, governance_service: Any) -> None:
    marker = unique("shell-")
    approve = when_waiting(
        governance_service, lambda r: governance_service.decide(r["id"], "approve", "read only")
    )
    result = kernel.execute(f"!echo {marker}", while_running=approve)
    assert result.status == "ok", result.text
    assert marker in result.text
    assert result.statuses()[0] == "waiting" and result.statuses()[-1] == "approved"
    assert "Approved by bob: read only" in result.text
    events = [r["event_type"] for r in cell_records(governance_service, marker, until=3)]
    assert events == ["approval.requested", "cell.start", "cell.end"]
    start = [r for r in governance_service.audit(user="alice") if r["event_type"] == "cell.start"][-1]
    assert start["data"]["approval_id"]


def test_denied_cell_does_not_run_and_replies_error(
    kernel: Any, governance_service: Any, tmp_path: Any
) -> None:
    target = tmp_path / unique("denied-")
    deny = when_waiting(
        governance_service, lambda r: governance_service.decide(r["id"], "deny", "no shell today")
    )
    result = kernel.execute(f"!touch {target}", while_running=deny)
    assert result.status == "error"
    assert result.reply["ename"] == "ApprovalDenied"
    assert "denied by bob: no shell today" in result.reply["evalue"]
    assert not target.exists()
    assert result.statuses()[-1] == "denied"


def test_edited_cell_needs_a_new_approval_and_the_same_cell_reuses_it(
    kernel: Any, governance_service: Any
) -> None:
    marker = unique("reuse-")
    approve = when_waiting(governance_service, lambda r: governance_service.decide(r["id"], "approve", "ok"))
    assert kernel.execute(f"!echo {marker}", while_running=approve).status == "ok"
    again = kernel.execute(f"!echo {marker}")  # same source, inside the policy's window: no new request
    assert again.status == "ok" and marker in again.text
    assert again.statuses() == []

    seen: list[dict[str, Any]] = []

    def record_and_deny(request: dict[str, Any]) -> None:
        seen.append(request)
        governance_service.decide(request["id"], "deny", "edited")

    edited = kernel.execute(
        f"!echo {marker} edited", while_running=when_waiting(governance_service, record_and_deny)
    )
    assert edited.status == "error"
    assert seen and seen[0]["code"] == f"!echo {marker} edited"


def test_interrupt_while_waiting_cancels_the_request_and_keeps_the_kernel(
    kernel: Any, governance_service: Any
) -> None:
    marker = unique("interrupt-")
    requests: list[dict[str, Any]] = []

    def interrupt(request: dict[str, Any]) -> None:
        requests.append(request)
        kernel.manager.interrupt_kernel()

    result = kernel.execute(f"!echo {marker}", while_running=when_waiting(governance_service, interrupt))
    assert result.status == "error"
    assert result.reply["ename"] == "KeyboardInterrupt"
    assert "cancelled" in result.reply["evalue"]
    assert kernel.manager.is_alive()
    status = governance_service.as_user("bob").get(f"approvals/{requests[0]['id']}").json()["status"]
    assert status == "cancelled"
    after = kernel.execute("print('still here')")
    assert after.status == "ok" and "still here" in after.text


def test_no_decision_within_the_timeout_fails_closed(governance_service: Any) -> None:
    with governed_kernel(governance_service, GOVERNED_APPROVAL_TIMEOUT="2") as kernel:
        started = time.monotonic()
        result = kernel.execute(f"!echo {unique()}")
        assert result.status == "error"
        assert result.reply["ename"] == "ApprovalTimeout"
        assert time.monotonic() - started < 30


def test_a_denied_rule_never_runs_and_run_all_stops(kernel: Any) -> None:
    count_before = kernel.execute("1").reply["execution_count"]
    result = kernel.execute("import sys\nsys.addaudithook(lambda *a: None)")
    assert result.status == "error"
    assert result.reply["ename"] == "PolicyDenied"
    assert "rule" in result.reply["evalue"]
    assert result.reply["execution_count"] == count_before + 1


def test_what_static_rules_cannot_see_is_stopped_at_run_time_then_sent_for_approval(
    kernel: Any, governance_service: Any
) -> None:
    target = Path("/var/tmp") / unique("governed-write-")
    code = f"with open({str(target)!r}, 'w') as handle:\n    handle.write('data')"
    try:
        first = kernel.execute(code)
        assert first.status == "error"
        assert first.reply["ename"] == "PermissionError"
        assert "file-writes" in first.text
        assert "Run the cell again to send it to an approver" in first.text
        assert not target.exists()
        second, seen = run_approved(kernel, governance_service, code)
        assert second.status == "ok", second.text
        assert seen and seen[0]["rules"][0]["id"] == "file-writes"
        assert target.read_text() == "data"
    finally:
        target.unlink(missing_ok=True)


def test_service_down_means_no_cell_runs(governance_service: Any, tmp_path: Any) -> None:
    env = governance_service.kernel_env("alice")
    env["GOVERNED_SERVICE_URL"] = "http://127.0.0.1:9/governance/api/"
    kernel = GovernedKernel(env)
    try:
        marker = tmp_path / "ran"
        result = kernel.execute(f"open({str(marker)!r}, 'w').write('x')")
        assert result.status == "error"
        assert result.reply["ename"] in ("AuditUnavailable", "GovernanceUnavailable")
        assert "cannot be reached" in result.reply["evalue"]
        assert not marker.exists()
    finally:
        kernel.shutdown()


def test_observe_mode_runs_gated_cells_and_records_what_would_have_happened(
    governance_service: Any, tmp_path: Any
) -> None:
    from governance_service import write_test_policy  # type: ignore[import-not-found]

    observe_policy = write_test_policy(tmp_path / "observe.yaml", mode="observe")
    marker = unique("observe-")
    env = governance_service.kernel_env("alice", GOVERNED_POLICY=str(observe_policy))
    kernel = GovernedKernel(env)
    try:
        result = kernel.execute(f"!echo {marker}")
    finally:
        kernel.shutdown()
    assert result.status == "ok", result.text
    assert marker in result.text
    assert result.statuses() == []
    start = next(
        r for r in governance_service.audit(user="alice")
        if r["event_type"] == "cell.start" and marker in r["data"].get("code", "")
    )  # fmt: skip
    assert start["data"]["details"]["observe_would_have"] == "approve"
    assert start["data"]["details"]["decision"]["mode"] == "observe"


def test_a_card_number_in_what_the_guard_saw_never_leaves_the_kernel(
    kernel: Any, governance_service: Any
) -> None:
    """The run-time violation quotes the cell's arguments (here a path holding a test card number):
    the cell's output, its end record and the approval request built from it show it masked."""
    import json

    from governed_server.service.store import open_store

    pan = "4111111111111111"
    target = Path("/var/tmp") / unique(f"governed-{pan}-")
    code = f"with open({str(target)!r}, 'w') as handle:\n    handle.write('data')"
    try:
        first = kernel.execute(code)
        assert first.status == "error" and "file-writes" in first.text
        assert pan not in first.text and pan[-4:] in first.text
        second, seen = run_approved(kernel, governance_service, code)
        assert second.status == "ok", second.text
        reason = seen[0]["rules"][0]["reason"]
        assert pan not in reason and pan[-4:] in reason
    finally:
        target.unlink(missing_ok=True)
    store = open_store(governance_service.db_url)
    try:
        with store.read() as connection:
            rows = connection.exec_driver_sql("SELECT body FROM audit_records").fetchall()
    finally:
        store.close()
    bodies = [json.loads(row[0]) for row in rows]
    mine = [b for b in bodies if target.name[-8:] in json.dumps(b)]
    assert mine, "the records of these cells were not found"
    assert not [b["event_type"] for b in mine if b["data"].get("ingest_masked")], (
        "the kernel sent an unmasked card number; the server had to mask it"
    )


def test_rule_positions_reach_the_approver_and_the_log_as_numbers(
    kernel: Any, governance_service: Any
) -> None:
    """The project's own numbers are not card data: a rule's span (under a key that ends in "pan")
    reaches the queue and the audit log as the line and column it is, while the cell's card number
    is masked everywhere."""
    marker = unique("span-")
    pan = "4111 1111 1111 1111"
    code = f"note = 'card {pan}'\nif note:\n    !echo {marker}"
    seen: list[dict[str, Any]] = []

    def approve(request: dict[str, Any]) -> None:
        seen.append(request)
        governance_service.decide(request["id"], "approve", "ok")

    result = kernel.execute(code, while_running=when_waiting(governance_service, approve))
    assert result.status == "ok", result.text
    request = governance_service.as_user("bob").get(f"approvals/{seen[0]['id']}").json()
    assert pan not in request["code"] and "1111" in request["code"]
    spans = [rule["span"] for rule in request["rules"]]
    # Where the analyst typed it (columns from 1, end exclusive), not in IPython's rewrite of it.
    assert {"line": 3, "column": 5, "end_line": 3, "end_column": 11 + len(marker)} in spans, spans
    assert all(isinstance(value, int) for span in spans for value in span.values()), spans
    records = cell_records(governance_service, marker, until=3)
    start = next(r for r in records if r["event_type"] == "cell.start")
    logged = [rule["span"] for rule in start["data"]["details"]["decision"]["rules"]]
    assert logged and all(isinstance(v, int) for span in logged for v in span.values()), logged
    assert pan not in start["data"]["code"]
