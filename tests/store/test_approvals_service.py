"""The approval state machine on both backends: racing approvers, N-of-M under load, restarts."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from governed_kernel.policy.model import Approvals, Members, Roles
from governed_server.approval_model import ApprovalError, NewRequest
from governed_server.identity import KernelPrincipal, RoleResolver
from governed_server.service.approvals import ApprovalService
from governed_server.service.audit import AuditLog
from governed_server.service.store import Store, open_store

APPROVERS = [f"approver{n}" for n in range(8)]
ROLES = Roles(
    analysts=Members(users=("alice",)),
    approvers=Members(users=tuple(APPROVERS)),
    auditors=Members(users=("dave",)),
)
VERSION = "sha256:" + "1" * 64
KERNEL = KernelPrincipal(kernel_id="k-1", username="alice")


def service(store: Store, audit: AuditLog, required: int = 1) -> ApprovalService:
    settings = Approvals(
        required_approvers=required, pending_ttl_minutes=30, validity="window", window_minutes=60
    )
    return ApprovalService(store, audit, settings, RoleResolver(ROLES), VERSION)


def new_request(code: str = "!ls") -> NewRequest:
    return NewRequest(
        cell_hash=hashlib.sha256(code.encode()).hexdigest(),
        code_masked=code,
        policy_version=VERSION,
        rules=[{"id": "shell-escape", "action": "approve"}],
    )


def race(approvals: ApprovalService, request_id: str, decision: str = "approve") -> list[Any]:
    """Every approver decides at the same moment, each on its own connection."""
    resolver = approvals.roles

    def decide(name: str) -> Any:
        try:
            return approvals.decide(resolver.person(name), request_id, decision, f"ok from {name}").status
        except ApprovalError as error:
            return error.status

    with ThreadPoolExecutor(max_workers=len(APPROVERS)) as pool:
        return list(pool.map(decide, APPROVERS))


@pytest.mark.parametrize("required", [1, 2, 3])
def test_racing_approvers_cannot_overshoot_or_both_win(store: Store, audit: AuditLog, required: int) -> None:
    approvals = service(store, audit, required)
    request = approvals.request(KERNEL, new_request())
    outcomes = race(approvals, request.id)
    final = approvals.get(request.id)
    assert final.status == "approved"
    assert final.approvals == required
    assert len(final.decisions) == required
    assert outcomes.count(409) == len(APPROVERS) - required, outcomes
    assert audit.verify().ok


def test_a_deny_racing_approvals_leaves_one_consistent_outcome(store: Store, audit: AuditLog) -> None:
    approvals = service(store, audit, required=2)
    request = approvals.request(KERNEL, new_request())
    resolver = approvals.roles

    def decide(index: int) -> Any:
        name = APPROVERS[index]
        decision = "deny" if index == 0 else "approve"
        try:
            return approvals.decide(resolver.person(name), request.id, decision, "racing").status
        except ApprovalError as error:
            return error.status

    with ThreadPoolExecutor(max_workers=len(APPROVERS)) as pool:
        list(pool.map(decide, range(len(APPROVERS))))
    final = approvals.get(request.id)
    approvals_given = sum(1 for d in final.decisions if d.decision == "approve")
    denials = sum(1 for d in final.decisions if d.decision == "deny")
    if final.status == "denied":
        assert denials == 1 and approvals_given <= 1
    else:
        assert final.status == "approved" and approvals_given == 2 and denials == 0


def test_restart_keeps_pending_requests_and_approvals(db_url: str, audit_paths: Any) -> None:
    store = open_store(db_url)
    audit = AuditLog(store, checkpoint_every=None, **audit_paths)
    approvals = service(store, audit)
    pending = approvals.request(KERNEL, new_request("!date"))
    approved = approvals.request(KERNEL, new_request("!ls"))
    approvals.decide(approvals.roles.person("approver1"), approved.id, "approve", "fine")
    audit.checkpoint()
    store.close()

    reopened = open_store(db_url)
    try:
        audit = AuditLog(reopened, checkpoint_every=None, **audit_paths)
        approvals = service(reopened, audit)
        assert approvals.get(pending.id).status == "pending"
        reused = approvals.request(KERNEL, new_request("!ls"))
        assert (reused.id, reused.status) == (approved.id, "approved")
        assert approvals.consume(KERNEL, approved.id, reused.cell_hash).uses == 1
        assert audit.verify().ok
    finally:
        reopened.close()
