"""Approval requests as both sides see them: the service that stores and decides them, and the
single-user servers and kernels that open and wait for them (locally or over the API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

Status = Literal["pending", "approved", "denied", "expired", "cancelled"]
Decision = Literal["approve", "deny"]
STATUSES: tuple[Status, ...] = ("pending", "approved", "denied", "expired", "cancelled")
MAX_REASON = 2000
MAX_CODE = 200_000


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ApprovalError(Exception):
    """A request the rules refuse; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class NewRequest:
    """What a kernel submits for a cell that needs approval."""

    cell_hash: str
    code_masked: str
    policy_version: str
    rules: list[dict[str, Any]]
    notebook_path: str = ""
    cell_id: str = ""


@dataclass(frozen=True)
class DecisionView:
    approver: str
    decision: Decision
    reason: str
    decided_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "approver": self.approver,
            "decision": self.decision,
            "reason": self.reason,
            "decided_at": iso_time(self.decided_at),
        }


@dataclass(frozen=True)
class ApprovalView:
    """A request as the API shows it."""

    id: str
    created_at: datetime
    requester: str
    kernel_id: str
    notebook_path: str
    cell_id: str
    cell_hash: str
    code_masked: str
    policy_version: str
    rules: list[dict[str, Any]]
    status: Status
    required_approvals: int
    expires_at: datetime
    decided_at: datetime | None
    valid_until: datetime | None
    single_use: bool
    uses: int
    decisions: list[DecisionView] = field(default_factory=list)

    @property
    def approvals(self) -> int:
        return sum(1 for d in self.decisions if d.decision == "approve")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": iso_time(self.created_at),
            "requester": self.requester,
            "kernel_id": self.kernel_id,
            "notebook_path": self.notebook_path,
            "cell_id": self.cell_id,
            "cell_hash": self.cell_hash,
            "code": self.code_masked,
            "policy_version": self.policy_version,
            "rules": self.rules,
            "status": self.status,
            "required_approvals": self.required_approvals,
            "approvals": self.approvals,
            "expires_at": iso_time(self.expires_at),
            "decided_at": iso_time(self.decided_at),
            "valid_until": iso_time(self.valid_until),
            "single_use": self.single_use,
            "uses": self.uses,
            "decisions": [d.to_json() for d in self.decisions],
        }


def iso_time(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value else None
