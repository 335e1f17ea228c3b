"""Audit records for approval transitions, and the interface the approval service writes through."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Connection

from governed_server.approval_model import ApprovalView
from governed_server.audit_records import AuditEvent


class AuditSink(Protocol):
    """What the approval service needs of the audit log: append inside the caller's transaction."""

    def append(self, events: Sequence[AuditEvent], *, connection: Connection | None = None) -> Any: ...


def transition_event(
    event_type: str,
    actor: str,
    view: ApprovalView,
    *,
    reason: str | None = None,
    decision: str | None = None,
    authority: dict[str, Any] | None = None,
) -> AuditEvent:
    """The record of one approval transition: who moved which request, to what, and why;
    ``authority``: what made the actor an approver (their groups and, under JupyterHub, the Hub
    token and its governance scopes), so a decision can be traced to the credential behind it."""
    details: dict[str, Any] = {
        "status": view.status,
        "requester": view.requester,
        "approvals": view.approvals,
        "required_approvals": view.required_approvals,
        "rules": [rule.get("id") for rule in view.rules if isinstance(rule, dict)],
    }
    if decision is not None:
        details["decision"] = decision
    if reason is not None:
        details["reason"] = reason
    if view.valid_until is not None:
        details["valid_until"] = view.valid_until.isoformat()
    if authority:
        details["authority"] = authority
    return AuditEvent(
        event_type=event_type,
        user=actor,
        outcome="success",
        kernel_id=view.kernel_id,
        notebook=view.notebook_path,
        cell_id=view.cell_id,
        cell_hash=view.cell_hash,
        code=view.code_masked if event_type == "approval.requested" else "",
        approval_id=view.id,
        policy_version=view.policy_version,
        details=details,
    )
