"""The per-cell pipeline of the governed kernel: classify → approve → record start → run → record end.

Every step fails closed: if the policy did not load, the service is unreachable, an approval is
refused or the start record cannot be delivered, the cell does not run, and the analyst gets an
error that says what happened and what to do. The end record is buffered durably when it cannot be
delivered, and sent before the next cell runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import getpass
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from governed_kernel.audit_buffer import AuditBuffer, new_event_id
from governed_kernel.client import (
    SETUP_HINT,
    ApprovalRefused,
    GovernanceClient,
    GovernanceUnavailable,
    ServiceConfig,
)
from governed_kernel.masking import Masker, MaskingConfig, MaskingError, mask_json, needs_masking
from governed_kernel.policy import (
    Classifier,
    Decision,
    Policy,
    PolicyError,
    RuntimeGuard,
    Violation,
    aliases_from_namespace,
    load_policy,
)
from governed_kernel.record_delivery import AuditUndelivered, RecordDelivery, batch_size_from
from governed_kernel.requests import GOVERNED_METADATA, governed_source, source_hash
from governed_kernel.resources import default_policy_path
from governed_kernel.start_gate import AuditUnavailable, PendingStart, StartGate
from governed_kernel.status import ApprovalStatus, refusal

_GATE_FAILED = (
    "the cell was not run: the kernel could not hold it until its start record was stored ({error}). "
    "Restart the kernel; if this persists, report it to the governance administrators"
)
UNGUARDED = (
    "this request reached the kernel without passing a governance guard (the policy's "
    "requests.require_guard): run notebooks in JupyterLab or with `jupyter governance run`, not by "
    "connecting to the kernel directly; the cell was not run"
)
CLAIMED_USER_ENV = "GOVERNED_USER"
APPROVAL_TIMEOUT_ENV = "GOVERNED_APPROVAL_TIMEOUT"
AUDIT_BUFFER_ENV = "GOVERNED_AUDIT_BUFFER"
NOTEBOOK_ENV = "JPY_SESSION_NAME"
HTTP_WARMUP_IDLE_S = 1.0
"""The kernel prepares its HTTP client (approvals go over HTTP) once it has been idle this long."""
WAIT_SLICE_S = 5.0
"""Each long-poll lasts at most this long, so the waiting display's elapsed time stays current."""


@dataclass
class Cell:
    """One execute request, as the pipeline sees it."""

    code: str
    cell_id: str
    silent: bool
    store_history: bool
    notebook: str = ""
    user_expressions: Any = None

    @functools.cached_property
    def source(self) -> str:
        """What the request runs: the code and its user expressions (classified, approved, recorded)."""
        return governed_source(self.code, self.user_expressions)

    @functools.cached_property
    def cell_hash(self) -> str:
        return source_hash(self.source)


class CellBlocked(Exception):
    """The cell must not run; ``ename``/``evalue`` become the error the analyst sees."""

    def __init__(self, ename: str, evalue: str, *, outcome_event: str = "cell.blocked") -> None:
        super().__init__(evalue)
        self.ename = ename
        self.evalue = evalue
        self.outcome_event = outcome_event


@dataclass
class Approval:
    request_id: str
    decisions: list[dict[str, Any]] = field(default_factory=list)


class Governor:
    """Holds the kernel's policy, classifier, runtime guard and service client; governs each cell."""

    def __init__(self, kernel: Any, *, environ: dict[str, str] | None = None) -> None:
        self.kernel = kernel
        env = dict(os.environ if environ is None else environ)
        self.setup_error: str | None = None
        self.policy: Policy | None = None
        self.masker = Masker()
        try:
            # One policy load per kernel: the masking Session may have loaded it already (its
            # streams need a masker first); then both use the same settings.
            path = default_policy_path()
            session = getattr(kernel, "session", None)
            loaded = getattr(session, "loaded_policy", None)
            shared = loaded(path) if loaded is not None else None
            self.policy = shared or load_policy(path)
            self.masker = Masker(MaskingConfig.from_mapping(self.policy.masking))
            configure = getattr(session, "configure_masking", None)
            if configure is not None and shared is None:
                configure(self.policy.masking)
        except PolicyError as error:
            self.setup_error = f"the governance policy did not load, so no cell can run:\n{error}"
        except (OSError, ValueError) as error:
            self.setup_error = f"the governance policy could not be used, so no cell can run: {error}"
        self.classifier = Classifier(self.policy) if self.policy else None
        self.violations: list[Violation] = []
        self.guard = RuntimeGuard(self.policy, on_violation=self.violations.append) if self.policy else None
        config = ServiceConfig.from_environment(env)
        self.client: GovernanceClient | None = GovernanceClient(config) if config else None
        self.start_gate = StartGate(self._guard_suspended)
        if config is None and self.setup_error is None:
            self.setup_error = (
                f"this kernel is not connected to a governance service, so no cell can run. {SETUP_HINT}"
            )
        self.buffer = AuditBuffer(Path(env.get(AUDIT_BUFFER_ENV) or self._default_buffer_path()))
        try:
            batch_size = batch_size_from(env)
        except ValueError as error:
            batch_size = 1
            problem = f"the kernel's audit settings are wrong, so no cell can run: {error}"
            self.setup_error = self.setup_error or problem
        self.delivery = RecordDelivery(self.client, self.buffer, batch_size)
        self.claimed_user = env.get(CLAIMED_USER_ENV) or None
        self.os_user = _os_user()
        self.notebook = env.get(NOTEBOOK_ENV, "")
        self.escalated: dict[str, Violation] = {}
        self._last_masked_code: tuple[str | None, str] = (None, "")
        self._cells_running = 0
        self._last_cell_at = time.monotonic()
        timeout = env.get(APPROVAL_TIMEOUT_ENV)
        ttl = self.policy.approvals.pending_ttl_minutes * 60.0 if self.policy else 0.0
        self.approval_timeout = float(timeout) if timeout not in (None, "") else ttl

    def _default_buffer_path(self) -> str:
        """Beside the kernel's connection file, named after it: a kernel restarted after a crash keeps
        that file, so it finds (and sends) the records its predecessor left."""
        app = getattr(self.kernel, "parent", None)
        connection = getattr(app, "abs_connection_file", "") or ""
        stem = Path(connection).stem or f"pid-{os.getpid()}"
        base = Path(connection).parent if connection else Path.home() / ".local" / "share" / "jupyter"
        return str(base / f"governed-audit-{stem}.jsonl")

    # -- the pipeline --------------------------------------------------------------------------------

    def warm_http_when_idle(self, call_later: Callable[[float, Callable[[], None]], object]) -> None:
        """Prepare the HTTP client in a thread once no cell ran for :data:`HTTP_WARMUP_IDLE_S`
        (``call_later``: the kernel loop's), so that an approved cell does not wait for it."""
        client = self.client
        if client is None:
            return
        idle = time.monotonic() - self._last_cell_at
        if self._cells_running or idle < HTTP_WARMUP_IDLE_S:
            call_later(HTTP_WARMUP_IDLE_S, lambda: self.warm_http_when_idle(call_later))
            return

        def prepare() -> None:
            with contextlib.suppress(Exception):  # the first approval then prepares it, and says why not
                client.prepare_http()

        threading.Thread(target=prepare, name="governed-http-warmup", daemon=True).start()

    async def execute(self, cell: Cell, run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Govern one cell; ``run`` executes it with ipykernel and returns its reply content."""
        self._cells_running += 1
        self._last_cell_at = time.monotonic()
        try:
            return await self._execute(cell, run)
        finally:
            self._cells_running -= 1
            self._last_cell_at = time.monotonic()

    async def _execute(self, cell: Cell, run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        approval: Approval | None = None
        decision: Decision | None = None
        try:
            if self.setup_error is not None or self.policy is None or self.classifier is None:
                raise CellBlocked("GovernanceUnavailable", self.setup_error or "no policy")
            if self.policy.requests.require_guard and _guard_of(self.kernel) == "none":
                raise CellBlocked("UnguardedRequest", UNGUARDED)
            decision = self._classify(cell)
            action = self._effective_action(cell, decision)
            if action == "deny":
                await self._send([self._record("cell.denied", cell, decision, outcome="failure")])
                raise CellBlocked("PolicyDenied", self._denied_message(decision))
            checked = _server_approval(self.kernel)
            pending: PendingStart | None = None
            if checked:  # the server held the cell until this approval existed: check it and use it
                approval = await self._use_and_start(cell, decision, checked)
            elif action == "approve":
                await self._send([])  # earlier cells' end records first, then the request
                approval = await self._use_and_start(
                    cell, decision, await self._obtain_approval(cell, decision)
                )
            else:
                pending = await self._deliver_start(cell, decision, None)
        except CellBlocked as blocked:
            return self._blocked(cell, blocked)
        return await self._run(cell, decision, approval, run, pending)

    def _classify(self, cell: Cell) -> Decision:
        assert self.classifier is not None
        shell = getattr(self.kernel, "shell", None)
        namespace = getattr(shell, "user_ns", {}) if shell is not None else {}
        try:
            return self.classifier.classify(cell.source, aliases_from_namespace(namespace))
        except Exception as error:  # a classifier bug must not let the cell through
            raise CellBlocked(
                "GovernanceError", f"the cell could not be classified ({error!r}); it was not run"
            ) from None

    def _effective_action(self, cell: Cell, decision: Decision) -> str:
        action: str = decision.action
        if action == "allow" and cell.cell_hash in self.escalated:
            action = "approve"  # it tripped the runtime guard last time: an approver must look
        if decision.mode == "observe":
            return "allow"
        return action

    async def _run(
        self,
        cell: Cell,
        decision: Decision | None,
        approval: Approval | None,
        run: Callable[[], Awaitable[dict[str, Any]]],
        pending: PendingStart | None,
    ) -> dict[str, Any]:
        ledger = getattr(getattr(self.kernel, "session", None), "ledger", None)
        parent_id = _parent_msg_id(self.kernel)
        if ledger is not None and parent_id:
            ledger.begin(parent_id)
        self.violations.clear()
        started = time.monotonic()
        reply: dict[str, Any] = {}
        undelivered: str | None = None
        try:
            gated = True
            if pending is not None:
                try:
                    self.start_gate.install(self.kernel.shell)
                    self.start_gate.pending = pending  # answered just before the cell's code runs
                except Exception as error:  # fail closed: without the gate, code could outrun its record
                    gated = False
                    refusal = CellBlocked("GovernanceError", _GATE_FAILED.format(error=error))
                    reply = self._blocked(cell, refusal)
            if gated:
                with self._guarded(approval is None):
                    reply = await run()
        finally:
            self.start_gate.pending = None
            if pending is not None:
                reached = pending.done
                try:
                    pending.finish()  # IPython never got to the gate (empty cell, syntax error): now
                except AuditUnavailable as error:
                    undelivered = str(error)
                    if not reached:
                        count = reply.get("execution_count")
                        reply = self._error_reply(cell, "AuditUnavailable", undelivered, count)
            duration = time.monotonic() - started
            outputs = ledger.finish(parent_id) if ledger is not None and parent_id else None
            violations = list(self.violations)
            if undelivered is None:  # no start record, no end record: the cell did not run
                if violations and any(v.enforced for v in violations):
                    self.escalated[cell.cell_hash] = violations[0]
                await self._deliver_end(cell, decision, approval, reply, duration, outputs, violations)
        if undelivered is None and any(v.enforced for v in violations):
            self._hint_after_violation(violations[0])
        return reply

    def _guard_suspended(self) -> contextlib.AbstractContextManager[Any]:
        return self.guard.suspended() if self.guard is not None else contextlib.nullcontext()

    @contextlib.contextmanager
    def _guarded(self, active: bool) -> Iterator[None]:
        if not active or self.guard is None:
            yield
            return
        with self.guard.activate():
            yield

    # -- approvals -----------------------------------------------------------------------------------

    async def _obtain_approval(self, cell: Cell, decision: Decision) -> str:
        """Ask for an approval and wait for it; the approved request's id."""
        assert self.client is not None and self.policy is not None
        escalation = self.escalated.get(cell.cell_hash)
        rules = [
            {
                "id": f.rule_id,
                "action": f.action,
                "reason": f.reason,
                "pci": list(f.pci),
                "span": f.span.to_dict(),
            }
            for f in decision.findings
            if f.action != "allow"
        ]
        if escalation is not None and not rules:
            rules = [{"id": escalation.rule_id, "action": "approve",
                      "reason": f"at run time the cell tried: {escalation.detail}"}]  # fmt: skip
        rules = self._mask_data(rules)  # reasons can quote the cell (a process's arguments...)
        body = {
            "cell_hash": cell.cell_hash,
            "code": self._mask(cell.source),
            "policy_version": decision.policy_version,
            "rules": rules,
            "notebook_path": self._mask(cell.notebook or self.notebook)[:1024],
            "cell_id": cell.cell_id[:128],
        }
        view = await self._service(self.client.request_approval(body), "open an approval request")
        if view["status"] == "pending":
            view = await self._wait_for_decision(view)
        if view["status"] != "approved":
            raise CellBlocked(*refusal(view))
        return str(view["id"])

    async def _use_and_start(self, cell: Cell, decision: Decision, request_id: str) -> Approval:
        """Use an approval once (the service checks it binds this cell, this user, this policy) and
        store the cell's start record in the same call: the start record is stored with the use or
        not at all, and the approved cell is one round trip from running."""
        assert self.client is not None
        client = self.client
        start = self._start_record(cell, decision, Approval(request_id=request_id, decisions=[]))
        try:  # earlier cells' end records first
            view = await self.delivery.send_then(
                lambda: self._service(
                    client.use(request_id, cell.cell_hash, records=[start]), "use the approval"
                )
            )
        except AuditUndelivered as error:
            raise CellBlocked("AuditUnavailable", str(error)) from None
        return Approval(request_id=view["id"], decisions=view.get("decisions", []))

    async def _wait_for_decision(self, view: dict[str, Any]) -> dict[str, Any]:
        assert self.client is not None and self.policy is not None
        request_id = view["id"]
        status = ApprovalStatus(view, self.policy)
        if self.approval_timeout <= 0:
            status.show_required()
            raise CellBlocked(
                "ApprovalRequired", status.required_message(), outcome_event="cell.awaiting_approval"
            )
        status.show()
        deadline = time.monotonic() + self.approval_timeout
        future = asyncio.ensure_future(self._wait_loop(request_id, status, deadline))
        with self._cancel_on_interrupt(future):
            try:
                result = await future
            except asyncio.CancelledError:
                with contextlib.suppress(GovernanceUnavailable, ApprovalRefused):
                    await self.client.cancel(request_id)
                status.finish_interrupted()
                raise CellBlocked(
                    "KeyboardInterrupt",
                    f"interrupted while waiting for approval; request {request_id} was cancelled",
                ) from None
        if result["status"] == "pending":
            with contextlib.suppress(GovernanceUnavailable, ApprovalRefused):
                await self.client.cancel(request_id)
            status.finish_timed_out(self.approval_timeout)
            raise CellBlocked(
                "ApprovalTimeout",
                f"no decision on request {request_id} within {self.approval_timeout:.0f} s; the request "
                "was cancelled. Run the cell again to ask again.",
            )
        status.finish(result)
        return result

    async def _wait_loop(self, request_id: str, status: ApprovalStatus, deadline: float) -> dict[str, Any]:
        assert self.client is not None
        while True:
            remaining = deadline - time.monotonic()
            view = await self._service(
                self.client.wait(request_id, max(0.0, min(WAIT_SLICE_S, remaining))), "wait for the decision"
            )
            if view["status"] != "pending" or deadline - time.monotonic() <= 0:
                return view
            status.update(view)

    @contextlib.contextmanager
    def _cancel_on_interrupt(self, future: asyncio.Future[Any]) -> Iterator[None]:
        """An interrupt while waiting cancels the wait (and the request), never the kernel."""
        cancel = getattr(self.kernel, "_cancel_on_sigint", None)
        if cancel is None or threading.current_thread() is not threading.main_thread():
            yield
            return
        with cancel(future):
            yield

    async def _service(self, call: Awaitable[dict[str, Any]], what: str) -> dict[str, Any]:
        try:
            return await call
        except GovernanceUnavailable as error:
            raise CellBlocked(
                "GovernanceUnavailable", f"could not {what}: {error} The cell was not run."
            ) from None
        except ApprovalRefused as error:
            raise CellBlocked(
                "ApprovalRefused", f"could not {what}: {error}. The cell was not run."
            ) from None

    # -- audit ---------------------------------------------------------------------------------------

    def _record(
        self,
        event_type: str,
        cell: Cell,
        decision: Decision | None,
        *,
        outcome: str = "success",
        approval: Approval | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "event_type": event_type,
            "event_id": new_event_id(),
            "outcome": outcome,
            "claimed_user": self.claimed_user,
            "notebook": self._mask(cell.notebook or self.notebook)[:1024],
            "cell_id": cell.cell_id[:128],
            "cell_hash": cell.cell_hash,
            "code": self._masked_code(cell),
            "policy_version": self.policy.version if self.policy else "",
            "approval_id": approval.request_id if approval else None,
            # The request's msg_id matches this record to the server's record of the same request.
            "details": {
                "os_user": self.os_user,
                "silent": cell.silent,
                "msg_id": _parent_msg_id(self.kernel),
                "guard": _guard_of(self.kernel),
                **(details or {}),
            },
        }
        if decision is not None:
            record["details"]["decision"] = decision.to_dict()
            record["tables"] = self._mask_data(
                sorted({f.subject for f in decision.findings if f.criterion == "sql"})[:100]
            )
        # Findings and run-time violations can quote the cell (a literal, a process's arguments):
        # nothing unmasked leaves the kernel, the audit records included.
        record["details"] = self._mask_data(record["details"])
        return record

    def _start_record(self, cell: Cell, decision: Decision, approval: Approval | None) -> dict[str, Any]:
        record = self._record("cell.start", cell, decision, approval=approval)
        if decision.mode == "observe" and decision.action != "allow":
            record["details"]["observe_would_have"] = decision.action
        return record

    async def _deliver_start(
        self, cell: Cell, decision: Decision, approval: Approval | None
    ) -> PendingStart | None:
        """Send the start record. On the audit stream its answer is read later, just before the
        cell's code runs (:mod:`governed_kernel.start_gate`); over HTTP it is delivered now (None)."""
        record = self._start_record(cell, decision, approval)
        if getattr(getattr(self.kernel, "shell", None), "transform_ast", None) is None:  # no gate to hold it
            await self._send([record])
            return None
        return await self._start([record])

    async def _deliver_end(
        self,
        cell: Cell,
        decision: Decision | None,
        approval: Approval | None,
        reply: dict[str, Any],
        duration: float,
        outputs: Any,
        violations: list[Violation],
    ) -> None:
        status = reply.get("status", "error")
        details: dict[str, Any] = {
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "execution_count": reply.get("execution_count"),
        }
        if status == "error":
            details["error"] = self._mask(f"{reply.get('ename', '')}: {reply.get('evalue', '')}")[:2000]
        if violations:
            details["violations"] = [v.to_dict() for v in violations[:20]]
        record = self._record(
            "cell.end", cell, None, outcome="success" if status == "ok" else "failure", approval=approval,
            details=details,
        )  # fmt: skip
        if outputs is not None:
            record.update(
                output=outputs.text, output_sha256=outputs.sha256, output_size=outputs.size,
                masking=dict(outputs.counts),
            )  # fmt: skip
            if getattr(outputs, "dropped", 0):
                record["details"]["dropped_outputs"] = outputs.dropped
        # The cell already ran: its record goes to the local buffer now and to the service with the
        # next batch (record_delivery); it is never dropped.
        await self.delivery.end(record)

    async def _start(self, records: list[dict[str, Any]]) -> PendingStart | None:
        try:
            return await self.delivery.start(records)
        except AuditUndelivered as error:
            raise CellBlocked("AuditUnavailable", str(error)) from None

    async def _send(self, records: list[dict[str, Any]]) -> None:
        """Deliver buffered records, then ``records``, in order; raise :class:`CellBlocked` if not."""
        try:
            await self.delivery.send(records)
        except AuditUndelivered as error:
            raise CellBlocked("AuditUnavailable", str(error)) from None

    # -- replies -------------------------------------------------------------------------------------

    def _blocked(self, cell: Cell, blocked: CellBlocked) -> dict[str, Any]:
        """An error reply (status ``error``, so Run All and nbclient stop) and the matching iopub error."""
        shell = getattr(self.kernel, "shell", None)
        if shell is not None and cell.store_history:
            shell.execution_count += 1  # a refused cell still takes its number
        count = shell.execution_count - 1 if shell is not None else 0
        return self._error_reply(cell, blocked.ename, blocked.evalue, count)

    def _error_reply(self, cell: Cell, ename: str, evalue: str, count: Any) -> dict[str, Any]:
        kernel = self.kernel
        evalue = self._mask(evalue)
        content = {
            "ename": ename,
            "evalue": evalue,
            "traceback": [f"\x1b[0;31m{ename}\x1b[0m: {line}" if i == 0 else line
                          for i, line in enumerate(evalue.splitlines() or [""])],
        }  # fmt: skip
        if not cell.silent and hasattr(kernel, "send_response"):
            kernel.send_response(kernel.iopub_socket, "error", content)
        return {"status": "error", "execution_count": count, **content}

    def _denied_message(self, decision: Decision) -> str:
        lines = ["the governance policy does not allow this cell, so it was not run:"]
        for finding in decision.findings:
            if finding.action == "deny":
                pci = f" (PCI DSS {', '.join(finding.pci)})" if finding.pci else ""
                lines.append(f"  rule {finding.rule_id} at line {finding.span}: {finding.reason}{pci}")
        return "\n".join(lines)

    def _hint_after_violation(self, violation: Violation) -> None:
        print(
            f"\n[governance] rule {violation.rule_id} stopped this cell at run time ({violation.detail}). "
            "Run the cell again to send it to an approver.",
            flush=True,
        )

    def _masked_code(self, cell: Cell) -> str:
        """The cell's code, masked once for its start and end records."""
        if self._last_masked_code[0] is not cell.source:
            self._last_masked_code = (cell.source, self._mask(cell.source))
        return self._last_masked_code[1]

    def _mask_data(self, value: Any) -> Any:
        """``value`` (one of the kernel's own records, JSON-like) with every card number masked;
        withheld if masking fails. Its keys are field names, not data columns (``by_name=False``)."""
        try:
            if needs_masking(value, self.masker, by_name=False):
                return mask_json(value, self.masker, by_name=False)[0]
            return value
        except MaskingError:
            return {"withheld": "masking failed"} if isinstance(value, dict) else []

    def _mask(self, text: str) -> str:
        try:
            return str(self.masker.mask_text(text)[0])
        except MaskingError:
            return "[masking failed: text withheld]"

    async def close(self) -> None:
        await self.delivery.close()
        if self.client is not None:
            await self.client.aclose()


def _parent(kernel: Any) -> dict[str, Any]:
    getter = getattr(kernel, "get_parent", None)
    parent = getter("shell") if getter is not None else getattr(kernel, "_parent_header", {})
    return dict(parent or {})


def _guard_of(kernel: Any) -> str:
    """Which guard recorded the request before the kernel got it ("server", "batch"), or "none"."""
    governed = (_parent(kernel).get("metadata") or {}).get(GOVERNED_METADATA)
    guard = governed.get("guard") if isinstance(governed, dict) else None
    return str(guard) if guard in ("server", "batch") else "none"


def _server_approval(kernel: Any) -> str | None:
    """The approval the server's inbound guard names in the request's metadata, if any."""
    governed = (_parent(kernel).get("metadata") or {}).get(GOVERNED_METADATA)
    approval = governed.get("approval") if isinstance(governed, dict) else None
    return str(approval) if approval else None


def _parent_msg_id(kernel: Any) -> str:
    getter = getattr(kernel, "get_parent", None)
    parent = getter("shell") if getter is not None else getattr(kernel, "_parent_header", {})
    header = (parent or {}).get("header", {})
    return str(header.get("msg_id", ""))


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())
