"""The governance service: policy, store, audit log, approvals and credentials, wired once.

One object that the HTTP handlers, the kernel provisioner and the standalone ``serve`` command share,
built from plain settings so tests can build it without a server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from governed_kernel.masking import Masker, MaskingConfig
from governed_kernel.policy import Classifier, Policy, load_policy
from governed_kernel.requests import governed_source, source_hash
from governed_server.approval_model import ApprovalView
from governed_server.audit_records import AuditEvent, AuditInputError, StoredRecord, masked_decision
from governed_server.events import APPROVAL_SCHEMA, CELL_SCHEMA, INTEGRITY_SCHEMA, register_schemas
from governed_server.file_modes import private_dir, sqlite_files, tighten_all
from governed_server.identity import KernelPrincipal, RoleResolver
from governed_server.ids import new_uuid
from governed_server.offload import on_loop
from governed_server.service import audit_checkpoints as cp
from governed_server.service.approvals import ApprovalService
from governed_server.service.audit import AuditLog
from governed_server.service.credentials import CredentialIssuer
from governed_server.service.notifier import Notifier
from governed_server.service.store import Store, kernel_credentials
from governed_server.service.store.engine import sqlite_path
from governed_server.service.witness import GRACE_S, WITNESSED_EVENTS, Finding, WitnessBook

log = logging.getLogger("governed_server")

APPROVAL_ACTIONS = {
    "approval.requested": "requested",
    "approval.endorsed": "endorsed",
    "approval.decided": "decided",
    "approval.expired": "expired",
    "approval.cancelled": "cancelled",
    "approval.used": "used",
}


@dataclass(frozen=True)
class ServiceSettings:
    policy_path: Path
    db_url: str
    checkpoint_dir: Path
    signing_key_path: Path
    groups: Mapping[str, Iterable[str]]
    server_id: str = ""
    sqlite_sync_interval: float = 0.0
    """See ``GovernedServerApp.sqlite_sync_interval``; 0 (fsync every commit) for tools and tests."""
    witness_grace_seconds: float = GRACE_S
    """See ``GovernedServerApp.witness_grace_seconds``."""


def _msg_id(record: dict[str, Any]) -> str:
    details = record.get("details")
    return str(details.get("msg_id", "")) if isinstance(details, dict) else ""


def secure_files(settings: ServiceSettings, database: Path | None) -> list[str]:
    """Make the service's files private at start (0600 in 0700 directories, log what changed) and
    create the signing key and checkpoint folder now: the kernel jail hides what exists when a
    kernel starts, and a key made later at the first checkpoint would be in no kernel's jail."""
    try:
        cp.load_or_create_key(settings.signing_key_path)
    except (OSError, cp.CheckpointError) as error:
        log.error(
            "governed_server: cannot create the audit signing key %s: %s", settings.signing_key_path, error
        )
    try:
        private_dir(settings.checkpoint_dir)
    except OSError as error:
        log.error(
            "governed_server: cannot create the checkpoint folder %s: %s", settings.checkpoint_dir, error
        )
    paths: list[tuple[Path, str]] = []
    if database is not None:
        paths.append((database.parent, "governance store folder"))
        paths += [(path, "governance store") for path in sqlite_files(database)]
    paths += [(settings.signing_key_path.parent, "audit signing key folder"),
              (settings.signing_key_path, "audit signing key"),
              (settings.checkpoint_dir, "audit checkpoints")]  # fmt: skip
    return tighten_all(paths, with_files_of=[settings.checkpoint_dir])


class ApprovalWaiters:
    """In-process wake-ups for long-polling kernels; other processes are seen by re-reading the store."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}

    async def wait(self, request_id: str, timeout: float) -> None:
        event = asyncio.Event()
        self._events.setdefault(request_id, set()).add(event)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            waiters = self._events.get(request_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    self._events.pop(request_id, None)

    def wake(self, request_id: str) -> None:
        for event in self._events.get(request_id, ()):
            event.set()


class GovernanceService:
    """Everything the API needs; construction fails (fail closed) when the policy or store is unusable."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        event_logger: Any = None,
        policy: Policy | None = None,
        clock: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy if policy is not None else load_policy(settings.policy_path)
        self.store = Store.open(settings.db_url, sqlite_sync_interval=settings.sqlite_sync_interval)
        self.audit = AuditLog(
            self.store,
            signing_key_path=settings.signing_key_path,
            checkpoint_dir=settings.checkpoint_dir,
            checkpoint_every=None,
        )
        self.file_changes = secure_files(settings, sqlite_path(self.store.engine.url))
        self.masker = Masker(MaskingConfig.from_mapping(self.policy.masking))
        # The inbound guard classifies what clients send, with the policy the kernels use.
        self.classifier = Classifier(self.policy)
        self.roles = RoleResolver(self.policy.roles, settings.groups)
        self.credentials = CredentialIssuer(self.store, settings.server_id)
        self.approvals = ApprovalService(
            self.store, self.audit, self.policy.approvals, self.roles, self.policy.version,
            new_id=lambda: new_uuid(self.masker),
        )  # fmt: skip
        if clock is not None:
            self.approvals.clock = clock
        self.waiters = ApprovalWaiters()
        self.witnesses = WitnessBook(grace_s=settings.witness_grace_seconds, masked=self._masked_text)
        self.notifier: Notifier | None = None
        """The approvers' webhook, when the operator configured one (``notifier``)."""
        self.event_logger = event_logger
        if event_logger is not None:
            register_schemas(event_logger)

    def _emit(self, *, schema_id: str, data: dict[str, Any]) -> None:
        """Emit an event on the server's event loop (listeners write to websockets), also when the
        service runs in a store thread (``offload``)."""
        on_loop(functools.partial(self._emit_logged, schema_id, data))

    def _emit_logged(self, schema_id: str, data: dict[str, Any]) -> None:
        try:
            assert self.event_logger is not None
            self.event_logger.emit(schema_id=schema_id, data=data)
        except Exception:
            log.exception("governed_server: could not emit a %s event", schema_id)

    def _masked_text(self, text: str) -> str:
        return str(self.masker.mask_text(text)[0])

    def announce(self, event_type: str, view: ApprovalView, actor: str) -> None:
        """Wake waiting kernels and push the transition to listeners (side panel, SIEM)."""
        on_loop(functools.partial(self.waiters.wake, view.id))
        if self.notifier is not None:
            try:
                self.notifier.announce(event_type, view, actor)
            except Exception:  # a notification must never undo a recorded transition
                log.exception("governed_server: could not queue the webhook for %s", view.id)
        if self.event_logger is None:
            return
        try:
            self._emit(
                schema_id=APPROVAL_SCHEMA,
                data={
                    "action": APPROVAL_ACTIONS[event_type],
                    "request_id": view.id,
                    "status": view.status,
                    "requester": view.requester,
                    "actor": actor,
                    "kernel_id": view.kernel_id,
                    "notebook_path": view.notebook_path,
                    "rules": [str(rule.get("id", "")) for rule in view.rules if isinstance(rule, dict)],
                    "approvals": view.approvals,
                    "required_approvals": view.required_approvals,
                },
            )
        except Exception:  # an event listener must never undo a recorded decision
            log.exception("governed_server: could not emit the approval event for %s", view.id)

    def record_notify_failure(self, failure: dict[str, Any]) -> None:
        """The approvers' webhook could not be delivered (after its retries): recorded, so a request
        nobody heard of can be told from one nobody looked at."""
        self.audit.append(
            [
                AuditEvent(
                    event_type="notify.failed",
                    user="governance",
                    outcome="failure",
                    server=self.settings.server_id,
                    approval_id=str(failure.get("request_id") or "") or None,
                    details=failure,
                )
            ]
        )

    def record_guard_event(self, kernel_id: str, msg_type: str, kinds: dict[str, int]) -> None:
        """Audit a message the data-path guard had to mask (the kernel's masking was bypassed)."""
        with self.store.read() as connection:
            row = connection.execute(
                select(kernel_credentials.c.username)
                .where(kernel_credentials.c.kernel_id == kernel_id)
                .limit(1)
            ).first()
        self.audit.append(
            [
                AuditEvent(
                    event_type="guard.masked",
                    user=str(row.username) if row is not None else "unknown",
                    outcome="failure",
                    kernel_id=kernel_id,
                    server=self.settings.server_id,
                    masking=kinds,
                    details={"msg_type": msg_type, "meaning": "the kernel sent an unmasked card number"},
                )
            ]
        )

    def record_outbound_event(
        self, user: str, route: str, path: str, kinds: dict[str, int], *, refused: bool = False
    ) -> None:
        """Audit file content that a route served masked, or a save refused over card numbers.

        ``path`` is masked already (a file name can hold a card number); no digits are stored.
        """
        meaning = (
            "a save over a file holding card numbers that the client only saw masked was refused"
            if refused
            else "file content was served with its card numbers masked"
        )
        self.audit.append(
            [
                AuditEvent(
                    event_type="guard.save_refused" if refused else "guard.masked",
                    user=user,
                    outcome="failure" if refused else "success",
                    server=self.settings.server_id,
                    notebook=path if path.endswith(".ipynb") else "",
                    masking=kinds,
                    details={"route": route, "path": path, "meaning": meaning},
                )
            ]
        )

    def ingest_kernel_audit(
        self, kernel: KernelPrincipal, records: list[dict[str, Any]], client_addr: str
    ) -> list[StoredRecord]:
        """Store a kernel's own records (already schema-checked) in one transaction, then announce them.

        The actor is the credential's user, never a field of the record. Raises AuditInputError.
        """
        stored = self.audit.append(self._kernel_events(kernel, records, client_addr))
        self._ingested(kernel, records, stored)
        return stored

    def use_approval(
        self,
        kernel: KernelPrincipal,
        request_id: str,
        cell_hash: str,
        records: list[dict[str, Any]],
        client_addr: str,
    ) -> tuple[ApprovalView, list[StoredRecord]]:
        """The kernel uses an approval and, in the same transaction, stores its ``records``: the
        approved cell's start record, nothing else (a kernel's other records go to ``kernel/audit``).
        Raises ApprovalError or AuditInputError (then nothing is stored)."""
        for record in records:
            if (record.get("event_type"), record.get("cell_hash"), record.get("approval_id")) != (
                "cell.start", cell_hash, request_id,
            ):  # fmt: skip
                raise AuditInputError(
                    f"records: only the start record of the approved cell (cell.start, cell_hash "
                    f"{cell_hash}, approval_id {request_id}) goes with the approval's use"
                )
        events = self._kernel_events(kernel, records, client_addr)
        view, stored = self.approvals.consume_and_record(kernel, request_id, cell_hash, events)
        self.announce("approval.used", view, kernel.username)
        self._ingested(kernel, records, stored)
        return view, stored

    def _kernel_events(
        self, kernel: KernelPrincipal, records: list[dict[str, Any]], client_addr: str
    ) -> list[AuditEvent]:
        return [
            submitted_event(record, kernel, client_addr=client_addr, server=self.settings.server_id)
            for record in records
        ]

    def _ingested(
        self, kernel: KernelPrincipal, records: list[dict[str, Any]], stored: list[StoredRecord]
    ) -> None:
        """After a kernel's records are committed: push them to listeners, tell the witness book."""
        self.announce_cells([record for record in stored if record.fresh])
        for record, result in zip(records, stored, strict=True):
            if result.fresh and record["event_type"] in WITNESSED_EVENTS:
                self.witnesses.witnessed(kernel.kernel_id, _msg_id(record), kernel.username)

    def ingest_server_report(
        self, server: KernelPrincipal, body: dict[str, Any], client_addr: str
    ) -> list[StoredRecord]:
        """A single-user server's report about one of its kernels (``servers/kernels/{id}/report``):
        its own records of the requests it forwarded or refused and of what its guards masked, then
        what the witness book needs. The user and kernel are the server credential's, never a field
        of a record. Raises AuditInputError."""
        events = [
            submitted_event(
                record,
                server,
                client_addr=record.get("client_addr", "") or client_addr,
                server=record.get("server", "") or self.settings.server_id,
            )
            for record in body.get("records", [])
        ]
        stored = self.audit.append(events) if events else []
        if not server.kernel_id:  # a server's records about no kernel (its file routes)
            return stored
        self.witnesses.guards(server.kernel_id)
        for msg_id in body.get("forwarded", []):
            self.witnesses.forwarded(server.kernel_id, msg_id, server.username)
        for reply in body.get("replied", []):
            self.witnesses.replied(server.kernel_id, reply["msg_id"], reply["status"])
        if body.get("gone"):
            self.witnesses.kernel_gone(server.kernel_id)
        return stored

    def record_batch_request(
        self, kernel: KernelPrincipal, body: dict[str, Any], client_addr: str
    ) -> StoredRecord:
        """A batch run's record of a cell it is about to send (``batch_guard``), as the server's guard
        records what it forwards: ``request.execute``, the decision, ``guard: batch``."""
        source = governed_source(body["code"], body.get("user_expressions"))
        decision = self.classifier.classify(source)

        def mask(text: str) -> str:
            return str(self.masker.mask_text(text)[0])

        event = AuditEvent(
            event_type="request.execute", user=kernel.username, client_addr=client_addr,
            server=self.settings.server_id, kernel_id=kernel.kernel_id, cell_id=body.get("cell_id", ""),
            cell_hash=source_hash(source), code=mask(source), policy_version=self.policy.version,
            details={"msg_id": body["msg_id"], "msg_type": "execute_request", "guard": "batch",
                     "verdict": "record", "decision": masked_decision(decision, mask)},
        )  # fmt: skip
        stored = self.audit.append([event])[0]
        self.witnesses.forwarded(kernel.kernel_id, body["msg_id"], kernel.username)
        return stored

    def settle_witnesses(self) -> None:
        """Record the forwarded cells that are settled without a kernel record (see ``witness``)."""
        findings = self.witnesses.due()
        if findings:
            self.record_findings(findings)

    def record_findings(self, findings: Iterable[Finding]) -> None:
        """Write what the witness book found; raise an integrity event for each alert."""
        findings = list(findings)
        self.audit.append([
            AuditEvent(
                event_type=f.kind, user=f.user, outcome="failure" if f.alert else "success",
                server=self.settings.server_id, kernel_id=f.kernel_id,
                details={"msg_id": f.msg_id, "meaning": f.summary},
            )
            for f in findings
        ])  # fmt: skip
        for finding in findings:
            if not finding.alert:
                continue
            log.warning("governed_server: %s", finding.summary)
            if self.event_logger is None:
                continue
            try:
                data = {"ok": False, "summary": finding.summary, "kind": finding.kind}
                self._emit(schema_id=INTEGRITY_SCHEMA, data=data)
            except Exception:
                log.exception("governed_server: could not emit the integrity alert")

    def announce_cells(self, records: Iterable[Any]) -> None:
        """Push cell records (ids and outcome only, never code or output) to listeners."""
        if self.event_logger is None:
            return
        for record in records:
            if not record.event_type.startswith("cell."):
                continue
            try:
                self._emit(
                    schema_id=CELL_SCHEMA,
                    data={
                        "event_type": record.event_type,
                        "user": record.user,
                        "kernel_id": str(record.origin.get("kernel_id", "")),
                        "notebook": str(record.origin.get("notebook", "")),
                        "outcome": record.outcome,
                        "seq": record.seq,
                    },
                )
            except Exception:
                log.exception("governed_server: could not emit the cell event for record %s", record.seq)

    def report_integrity(self, report: Any) -> None:
        """Push an integrity alert when verification found a problem."""
        if report.ok or self.event_logger is None:
            return
        first = report.first_bad
        data: dict[str, Any] = {"ok": False, "summary": report.summary()}
        if first is not None:
            data.update(first_bad_seq=int(first.seq), kind=str(first.kind))
        try:
            self._emit(schema_id=INTEGRITY_SCHEMA, data=data)
        except Exception:
            log.exception("governed_server: could not emit the integrity alert")

    def current_approval(self, request_id: str) -> ApprovalView:
        """The request as it stands now: pending requests past their time are expired (and that is
        announced) first. One store call for the loops that wait for a decision."""
        self.expire_due()
        return self.approvals.get(request_id, expire=False)

    def expire_due(self) -> list[ApprovalView]:
        expired = self.approvals.expire_due()
        for view in expired:
            self.announce("approval.expired", view, "governance")
        return expired

    def close(self) -> None:
        """Seal the log with a checkpoint and release the database."""
        try:
            self.audit.checkpoint()
        finally:
            self.store.close()


def submitted_event(
    record: dict[str, Any], principal: KernelPrincipal, *, client_addr: str, server: str
) -> AuditEvent:
    """A record sent by a kernel or a single-user server (schema-checked already), as it is stored:
    the user and kernel are the credential's, never fields of the record; the event id is the one
    made where the record was made (a new one when the sender made none)."""
    optional: dict[str, Any] = {"event_id": record["event_id"]} if "event_id" in record else {}
    return AuditEvent(
        event_type=record["event_type"],
        user=principal.username,
        outcome=record.get("outcome", "success"),
        claimed_user=record.get("claimed_user"),
        client_addr=client_addr,
        server=server,
        kernel_id=principal.kernel_id,
        session_id=record.get("session_id", ""),
        notebook=record.get("notebook", ""),
        cell_id=record.get("cell_id", ""),
        cell_hash=record.get("cell_hash", ""),
        tables=tuple(record.get("tables", ())),
        code=record.get("code", ""),
        output=record.get("output", ""),
        output_sha256=record.get("output_sha256"),
        output_size=record.get("output_size"),
        masking=record.get("masking", {}),
        approval_id=record.get("approval_id"),
        policy_version=record.get("policy_version", ""),
        details=record.get("details", {}),
        **optional,
    )
