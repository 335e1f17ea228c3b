"""The approval state machine: who may decide, how many must, how long requests and approvals live.

A request binds to its requester, kernel, notebook, cell, the SHA-256 of the exact cell source, the
policy version and the matched rules. It is decided by approvers named in the policy, never by its
requester, and approved once the policy's number of distinct approvers said yes (one "deny" ends it).
Pending requests expire after the policy's TTL; an approval is valid once, or for a window, and only
for the same requester, cell hash and policy version. Every transition writes an audit record in the
same transaction, so the approval state and its evidence cannot disagree.

Rules live here, not in the HTTP handlers, so tests and the CLI can drive them without a server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from governed_kernel.policy.model import Approvals as ApprovalSettings
from governed_server.approval_model import (
    MAX_CODE,
    MAX_REASON,
    STATUSES,
    ApprovalError,
    ApprovalView,
    DecisionView,
    NewRequest,
    Status,
    utcnow,
)
from governed_server.audit_records import AuditEvent
from governed_server.identity import KernelPrincipal, Person, RoleResolver
from governed_server.service.audit_events import AuditSink, transition_event
from governed_server.service.store import Store, approval_decisions, approval_requests


class ApprovalService:
    """Creates, decides, expires and consumes approval requests in the store."""

    def __init__(
        self,
        store: Store,
        audit: AuditSink,
        settings: ApprovalSettings,
        roles: RoleResolver,
        policy_version: str,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.store = store
        self.audit = audit
        self.settings = settings
        self.roles = roles
        self.policy_version = policy_version
        self.clock = clock
        self.new_id = new_id
        """Makes request ids; the service's draws ids its masker leaves alone (:mod:`governed_server.ids`)."""

    # -- kernel side -----------------------------------------------------------------------------

    def request(self, kernel: KernelPrincipal, new: NewRequest) -> ApprovalView:
        """Reuse a still-valid approval of the same cell, else open a new pending request."""
        if new.policy_version != self.policy_version:
            raise ApprovalError(
                409,
                f"the kernel classified the cell with policy {new.policy_version}, the service enforces "
                f"{self.policy_version}: restart the kernel to load the current policy",
            )
        if len(new.code_masked) > MAX_CODE:
            raise ApprovalError(400, f"the cell source is longer than {MAX_CODE} characters")
        now = self.clock()
        with self.store.begin() as connection:
            self._expire_due(connection, now)
            reusable = self._find_valid(connection, kernel.username, new.cell_hash, new.policy_version, now)
            if reusable is not None:
                return reusable
            request_id = self.new_id()
            settings = self.settings
            connection.execute(
                insert(approval_requests).values(
                    id=request_id,
                    created_at=now,
                    requester=kernel.username,
                    kernel_id=kernel.kernel_id,
                    notebook_path=new.notebook_path,
                    cell_id=new.cell_id,
                    cell_hash=new.cell_hash,
                    code_masked=new.code_masked,
                    policy_version=new.policy_version,
                    rules=new.rules,
                    status="pending",
                    required_approvals=settings.required_approvers,
                    expires_at=now + timedelta(minutes=settings.pending_ttl_minutes),
                    single_use=settings.validity == "once",
                    uses=0,
                )
            )
            view = self._load(connection, request_id)
            self.audit.append(
                [transition_event("approval.requested", kernel.username, view)], connection=connection
            )
            return view

    def consume(self, kernel: KernelPrincipal, request_id: str, cell_hash: str) -> ApprovalView:
        """The kernel is about to run an approved cell: check the binding and count the use."""
        return self.consume_and_record(kernel, request_id, cell_hash, [])[0]

    def consume_and_record(
        self, kernel: KernelPrincipal, request_id: str, cell_hash: str, events: Sequence[AuditEvent]
    ) -> tuple[ApprovalView, list[Any]]:
        """:meth:`consume`, with the kernel's ``events`` (the cell's start record) stored after the
        use in the same transaction: one round trip and one commit on the way to running the cell,
        and no start record without its use (nor a use refused after its start record). Returns the
        view and the stored records of ``events``."""
        now = self.clock()
        with self.store.begin() as connection:
            self._expire_due(connection, now)
            view = self._load_for_update(connection, request_id)
            if view.requester != kernel.username:
                raise ApprovalError(403, "this approval belongs to another user")
            if view.cell_hash != cell_hash:
                raise ApprovalError(409, "the cell changed since it was approved: it needs a new approval")
            if view.policy_version != self.policy_version:
                raise ApprovalError(409, "the policy changed since the approval: it needs a new approval")
            if view.status != "approved":
                raise ApprovalError(409, f"the request is {view.status}, not approved")
            if view.valid_until is not None and view.valid_until <= now:
                raise ApprovalError(409, "the approval's validity window has ended: request a new one")
            if view.single_use and view.uses >= 1:
                raise ApprovalError(409, "this approval was valid once and has been used")
            connection.execute(
                update(approval_requests)
                .where(approval_requests.c.id == request_id)
                .values(uses=approval_requests.c.uses + 1)
            )
            view = self._load(connection, request_id)
            stored = self.audit.append(
                [transition_event("approval.used", kernel.username, view), *events], connection=connection
            )
            return view, stored[1:]

    # -- people ----------------------------------------------------------------------------------

    def decide(self, approver: Person, request_id: str, decision: str, reason: str) -> ApprovalView:
        """Record one approver's decision; two approvers racing cannot both move the same request."""
        if decision not in ("approve", "deny"):
            raise ApprovalError(400, "decision must be 'approve' or 'deny'")
        reason = reason.strip()
        if not reason:
            raise ApprovalError(400, "a decision needs a reason")
        if len(reason) > MAX_REASON:
            raise ApprovalError(400, f"the reason is longer than {MAX_REASON} characters")
        if not self.roles.has_role(approver, "approver"):
            raise ApprovalError(403, f"{approver.username} is not an approver in the policy")
        now = self.clock()
        with self.store.begin() as connection:
            self._expire_due(connection, now)
            view = self._load_for_update(connection, request_id)
            if view.requester == approver.username:
                raise ApprovalError(403, "nobody approves their own request, administrators included")
            if view.status != "pending":
                raise ApprovalError(409, f"the request is already {view.status}")
            if any(d.approver == approver.username for d in view.decisions):
                raise ApprovalError(409, f"{approver.username} already decided on this request")
            try:
                with connection.begin_nested():
                    connection.execute(
                        insert(approval_decisions).values(
                            request_id=request_id,
                            approver=approver.username,
                            decision=decision,
                            reason=reason,
                            decided_at=now,
                        )
                    )
            except IntegrityError:
                raise ApprovalError(409, f"{approver.username} already decided on this request") from None
            approvals = view.approvals + (1 if decision == "approve" else 0)
            status: Status | None = None
            valid_until: datetime | None = None
            if decision == "deny":
                status = "denied"
            elif approvals >= view.required_approvals:
                status = "approved"
                valid_until = now + self._validity()
            if status is not None:
                connection.execute(
                    update(approval_requests)
                    .where(
                        and_(approval_requests.c.id == request_id, approval_requests.c.status == "pending")
                    )
                    .values(status=status, decided_at=now, valid_until=valid_until)
                )
            view = self._load(connection, request_id)
            event = "approval.decided" if status else "approval.endorsed"
            self.audit.append(
                [
                    transition_event(
                        event,
                        approver.username,
                        view,
                        reason=reason,
                        decision=decision,
                        authority=approver.authority(),
                    )
                ],
                connection=connection,
            )
            return view

    def cancel(self, who: Person | KernelPrincipal, request_id: str) -> ApprovalView:
        """The requester (or the requesting kernel) withdraws a pending request."""
        now = self.clock()
        with self.store.begin() as connection:
            self._expire_due(connection, now)
            view = self._load_for_update(connection, request_id)
            allowed = (
                view.kernel_id == who.kernel_id
                if isinstance(who, KernelPrincipal)
                else view.requester == who.username
            )
            if not allowed:
                raise ApprovalError(403, "only the requester can cancel a request")
            if view.status != "pending":
                raise ApprovalError(409, f"the request is already {view.status}")
            connection.execute(
                update(approval_requests)
                .where(approval_requests.c.id == request_id)
                .values(status="cancelled", decided_at=now)
            )
            view = self._load(connection, request_id)
            self.audit.append(
                [transition_event("approval.cancelled", who.username, view)], connection=connection
            )
            return view

    # -- reading ---------------------------------------------------------------------------------

    def get(self, request_id: str, *, expire: bool = True) -> ApprovalView:
        """The request; ``expire=False`` when the caller just expired what was due."""
        if expire:
            self.expire_due()
        with self.store.read() as connection:
            return self._load(connection, request_id)

    def search(
        self,
        *,
        status: str | None = None,
        requester: str | None = None,
        kernel_id: str | None = None,
        limit: int = 200,
    ) -> list[ApprovalView]:
        """Requests, oldest first (the order approvers work through them)."""
        if status is not None and status not in STATUSES:
            raise ApprovalError(400, f"status must be one of {', '.join(STATUSES)}")
        self.expire_due()
        query = select(approval_requests).order_by(approval_requests.c.created_at, approval_requests.c.id)
        if status:
            query = query.where(approval_requests.c.status == status)
        if requester:
            query = query.where(approval_requests.c.requester == requester)
        if kernel_id:
            query = query.where(approval_requests.c.kernel_id == kernel_id)
        with self.store.read() as connection:
            rows = connection.execute(query.limit(max(1, min(limit, 1000)))).all()
            return self._views(connection, rows)

    def expire_due(self) -> list[ApprovalView]:
        """Mark pending requests past their TTL as expired (each with an audit record)."""
        now = self.clock()
        with self.store.read() as connection:
            due = connection.execute(
                select(func.count())
                .select_from(approval_requests)
                .where(and_(approval_requests.c.status == "pending", approval_requests.c.expires_at <= now))
            ).scalar_one()
        if not due:
            return []
        with self.store.begin() as connection:
            return self._expire_due(connection, now)

    # -- internals -------------------------------------------------------------------------------

    def _validity(self) -> timedelta:
        if self.settings.validity == "window" and self.settings.window_minutes:
            return timedelta(minutes=self.settings.window_minutes)
        # "once": usable a single time, within the same span a pending request may wait.
        return timedelta(minutes=self.settings.pending_ttl_minutes)

    def _expire_due(self, connection: Connection, now: datetime) -> list[ApprovalView]:
        rows = connection.execute(
            select(approval_requests.c.id).where(
                and_(approval_requests.c.status == "pending", approval_requests.c.expires_at <= now)
            )
        ).all()
        expired = []
        for (request_id,) in rows:
            connection.execute(
                update(approval_requests)
                .where(and_(approval_requests.c.id == request_id, approval_requests.c.status == "pending"))
                .values(status="expired", decided_at=now)
            )
            view = self._load(connection, request_id)
            self.audit.append(
                [transition_event("approval.expired", "governance", view)], connection=connection
            )
            expired.append(view)
        return expired

    def _find_valid(
        self, connection: Connection, requester: str, cell_hash: str, policy_version: str, now: datetime
    ) -> ApprovalView | None:
        rows = connection.execute(
            select(approval_requests)
            .where(
                and_(
                    approval_requests.c.requester == requester,
                    approval_requests.c.cell_hash == cell_hash,
                    approval_requests.c.policy_version == policy_version,
                    approval_requests.c.status == "approved",
                    approval_requests.c.valid_until > now,
                )
            )
            .order_by(approval_requests.c.decided_at.desc())
        ).all()
        for view in self._views(connection, rows):
            if not (view.single_use and view.uses >= 1):
                return view
        return None

    def _load_for_update(self, connection: Connection, request_id: str) -> ApprovalView:
        # Row lock on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the database write lock.
        row = connection.execute(
            select(approval_requests).where(approval_requests.c.id == request_id).with_for_update()
        ).first()
        if row is None:
            raise ApprovalError(404, f"no approval request {request_id}")
        return self._views(connection, [row])[0]

    def _load(self, connection: Connection, request_id: str) -> ApprovalView:
        row = connection.execute(
            select(approval_requests).where(approval_requests.c.id == request_id)
        ).first()
        if row is None:
            raise ApprovalError(404, f"no approval request {request_id}")
        return self._views(connection, [row])[0]

    def _views(self, connection: Connection, rows: Sequence[Row[Any]]) -> list[ApprovalView]:
        ids = [row.id for row in rows]
        decisions: dict[str, list[DecisionView]] = {request_id: [] for request_id in ids}
        if ids:
            for d in connection.execute(
                select(approval_decisions)
                .where(approval_decisions.c.request_id.in_(ids))
                .order_by(approval_decisions.c.id)
            ):
                decisions[d.request_id].append(DecisionView(d.approver, d.decision, d.reason, d.decided_at))
        return [
            ApprovalView(
                id=row.id,
                created_at=row.created_at,
                requester=row.requester,
                kernel_id=row.kernel_id,
                notebook_path=row.notebook_path,
                cell_id=row.cell_id,
                cell_hash=row.cell_hash,
                code_masked=row.code_masked,
                policy_version=row.policy_version,
                rules=list(row.rules or []),
                status=row.status,
                required_approvals=row.required_approvals,
                expires_at=row.expires_at,
                decided_at=row.decided_at,
                valid_until=row.valid_until,
                single_use=bool(row.single_use),
                uses=row.uses,
                decisions=decisions[row.id],
            )
            for row in rows
        ]
