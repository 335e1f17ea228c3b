"""The server-side gate: every client message to a kernel is admitted here, in order, by the server.

One :class:`InboundGate` per kernel websocket. Shell messages are admitted in the order they
arrived: a message waiting for its record, or a cell held for an approval, keeps the ones behind it
waiting, as the kernel would. Control and stdin messages (an interrupt, the answer to ``input()``)
are admitted at once, so they are never stuck behind a held cell.

Protocol of a held cell (the kernel never sees it until it is approved):

1. the server records ``request.execute`` (the cell, its sender, the decision) before anything else;
2. it opens (or reuses) an approval request for that exact source, with the sender as requester;
3. it shows the client ``busy`` and the waiting display (the kernel's own display, updated in place);
4. approved: it forwards the request with ``metadata.governed.approval`` = the request's id; the
   kernel only checks that approval (and uses it, once) before running the cell;
5. denied, expired, cancelled, interrupted (``interrupt_kernel``) or the client gone: it records
   ``request.refused`` and answers the client itself: an ``error`` output, an ``execute_reply``
   with ``status: error`` (so Run All and nbclient stop), and ``idle``.

Store calls run in a worker thread, never on the server's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from governed_kernel.policy import Finding, fresh_kernel_aliases
from governed_kernel.policy.model import RequestSettings
from governed_kernel.requests import source_hash
from governed_kernel.status import ApprovalStatus, Bundle, refusal
from governed_server.approval_model import ApprovalError, ApprovalView, NewRequest
from governed_server.audit_records import AuditEvent
from governed_server.identity import KernelPrincipal
from governed_server.offload import offload
from governed_server.single_user.inbound import (
    ClientMessage,
    InboundError,
    Verdict,
    encode,
    judge,
    parse,
    request_event,
    with_governed_metadata,
)
from governed_server.single_user.patching import original
from governed_server.single_user.remote import ServiceUnavailable

if TYPE_CHECKING:
    from governed_server.service.governance import GovernanceService

log = logging.getLogger("governed_server")
WAIT_SLICE_S = 5.0
"""How often the waiting display's elapsed time is refreshed while a cell is held."""
SERVICE_RETRY_S = 2.0
"""Client mode: how often a record is tried again while the governance service is unreachable."""
SERVICE_WAIT_NOTICE = (
    "governed: the governance service is not reachable ({error}); this request waits up to "
    "{seconds:.0f} s for it, then is refused. Nothing runs unrecorded."
)
RECORD_FAILED = (
    "the server could not record this request in the audit log ({error}), so it was not sent to the "
    "kernel. Try again; if this persists, tell the governance administrators"
)


@dataclass
class KernelRequests:
    """What the server knows of one kernel's requests, shared by all its connections."""

    kernel_id: str
    bindings: dict[str, str] = field(default_factory=fresh_kernel_aliases)
    """Names bound by the cells the server forwarded (see ``Classifier.bindings_after``), from those
    of a new kernel's namespace (reset when the kernel restarts)."""
    comm_targets: dict[str, str] = field(default_factory=dict)
    password_prompt: bool = False
    notebook: str = ""
    holds: set[Hold] = field(default_factory=set)

    def interrupted(self) -> None:
        for hold in list(self.holds):
            hold.stop("interrupted")

    def restarted(self) -> None:
        """A new process, a new namespace: what earlier cells bound is gone."""
        self.interrupted()
        self.bindings = fresh_kernel_aliases()
        self.comm_targets.clear()
        self.password_prompt = False


class GateHost(Protocol):
    """What a gate needs of the extension (``settings["governed_server"]``): the service (the
    embedded one, or the remote client that stands for it in client mode) and its settings."""

    inbound: InboundRegistry
    kernel_user: str
    service: GovernanceService | None
    client_mode: bool
    unavailable_reason: str
    service_wait_seconds: float


class InboundRegistry:
    """Kernel id → :class:`KernelRequests`; interrupts of a kernel release the cells held for it."""

    def __init__(self, kernel_gone: Callable[[str], None] = lambda _kernel_id: None) -> None:
        self.kernels: dict[str, KernelRequests] = {}
        self.kernel_gone = kernel_gone
        """Told when a kernel restarts (its pending requests will never be answered)."""

    def kernel(self, kernel_id: str) -> KernelRequests:
        found = self.kernels.get(kernel_id)
        if found is None:
            found = self.kernels[kernel_id] = KernelRequests(kernel_id)
        return found

    async def learn_notebook(self, requests: KernelRequests, handler: Any) -> None:
        """The notebook a kernel serves (its session's path), named in the records of its requests."""
        try:
            sessions = await handler.session_manager.list_sessions()
        except Exception:  # the records then name no notebook; nothing else depends on it
            log.exception("governed_server inbound guard: could not list the sessions")
            return
        for session in sessions:
            kernel = session.get("kernel") or {}
            if kernel.get("id") == requests.kernel_id:
                requests.notebook = str(session.get("path") or "")
                return

    def install(self, kernel_manager: Any) -> None:
        """Wrap ``interrupt_kernel`` and ``restart_kernel``: an interrupt also cancels what the server
        holds for the kernel; a restart also forgets what its cells bound."""
        interrupt = original(kernel_manager, "interrupt_kernel")
        restart = original(kernel_manager, "restart_kernel")
        if getattr(interrupt, "releases_holds", False):
            return

        def interrupt_kernel(kernel_id: str, *args: Any, **kwargs: Any) -> Any:
            requests = self.kernels.get(kernel_id)
            if requests is not None:
                requests.interrupted()
            return interrupt(kernel_id, *args, **kwargs)

        def restart_kernel(kernel_id: str, *args: Any, **kwargs: Any) -> Any:
            requests = self.kernels.get(kernel_id)
            if requests is not None:
                requests.restarted()
            self.kernel_gone(kernel_id)
            return restart(kernel_id, *args, **kwargs)

        interrupt_kernel.releases_holds = True  # type: ignore[attr-defined]
        kernel_manager.interrupt_kernel = interrupt_kernel
        kernel_manager.restart_kernel = restart_kernel


class Hold:
    """One cell held for an approval; :meth:`stop` ends the wait early (interrupt, disconnect)."""

    def __init__(self) -> None:
        self.stopped: str | None = None
        self._wake = asyncio.Event()

    def stop(self, why: str) -> None:
        self.stopped = why
        self._wake.set()

    async def sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)


class ClientPublisher:
    """Shows the approval status in the client's output area, as the kernel's display would."""

    def __init__(self, gate: InboundGate, parent: dict[str, Any]) -> None:
        self.gate = gate
        self.parent = parent
        self.display_id = ""

    def show(self, bundle: Bundle) -> None:
        import uuid

        self.display_id = uuid.uuid4().hex
        self._send("display_data", bundle)

    def update(self, bundle: Bundle) -> None:
        self._send("update_display_data" if self.display_id else "display_data", bundle)

    def once(self, bundle: Bundle) -> None:
        self._send("display_data", bundle, transient=False)

    def _send(self, msg_type: str, bundle: Bundle, *, transient: bool = True) -> None:
        content: dict[str, Any] = {"data": bundle, "metadata": {}}
        if transient and self.display_id:
            content["transient"] = {"display_id": self.display_id}
        self.gate.to_client("iopub", msg_type, content, self.parent)


class InboundGate:
    """Admits one websocket's messages to its kernel (see the module)."""

    def __init__(
        self,
        app: GateHost,
        kernel_id: str,
        *,
        user: Any,
        protocol: Callable[[], str | None],
        session: Any,
        forward: Callable[[str | bytes], None],
        write: Callable[[str, dict[str, Any]], None],
        client_addr: str = "",
    ) -> None:
        self.app = app
        self.kernel = app.inbound.kernel(kernel_id)
        self.kernel_id = kernel_id
        self.user = user
        self.username = str(getattr(user, "username", "") or app.kernel_user)
        self.protocol = protocol
        self.session = session
        self.forward = forward
        self.write = write
        self.client_addr = client_addr
        self.queue: deque[ClientMessage] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.holds: set[Hold] = set()
        if app.service is not None:  # every request to this kernel passes here from now on
            app.service.witnesses.guards(kernel_id)

    def kernel_replied(self, msg_id: str, status: str) -> None:
        if self.service is not None:
            self.service.witnesses.replied(self.kernel_id, msg_id, status)

    def kernel_gone(self) -> None:
        """The kernel died or restarted: its namespace is new, its pending answers will not come."""
        self.kernel.restarted()
        if self.service is not None:
            self.service.witnesses.kernel_gone(self.kernel_id)

    # -- entry -----------------------------------------------------------------------------------

    def admit(self, raw: str | bytes) -> None:
        """Called for every message the client sends (synchronously, by jupyter_server)."""
        try:
            msg = parse(raw, self.protocol(), self.session.unpack)
        except InboundError as error:
            log.warning(
                "governed_server inbound guard: dropped a message for kernel %s: %s", self.kernel_id, error
            )
            return
        if msg.channel in ("control", "stdin"):
            self._spawn(self._admit(msg))
            return
        self.queue.append(msg)
        if self.worker is None or self.worker.done():
            self.worker = asyncio.ensure_future(self._drain())

    def close(self) -> None:
        """The client went away: cells held for it are released (their requests cancelled)."""
        for hold in list(self.holds):
            hold.stop("disconnected")

    async def _drain(self) -> None:
        while self.queue:
            await self._admit(self.queue.popleft())

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- the rules -------------------------------------------------------------------------------

    @property
    def service(self) -> GovernanceService | None:
        return self.app.service

    async def _admit(self, msg: ClientMessage) -> None:
        try:
            await self._admit_unsafe(msg)
        except Exception:  # fail closed: an error here never forwards the message
            log.exception(
                "governed_server inbound guard: a %s for kernel %s was not forwarded",
                msg.msg_type,
                self.kernel_id,
            )
            self._refuse(
                msg,
                "GovernanceError",
                "the server could not check this request; it was not sent to the kernel",
            )

    async def _admit_unsafe(self, msg: ClientMessage) -> None:
        if self.service is None and self.app.client_mode:
            await self._wait_for_service(msg, lambda: self.service is not None)
        service = self.service
        policy = service.policy if service is not None else None
        verdict = judge(
            msg,
            rules=policy.requests if policy is not None else _CLOSED_RULES,
            classifier=service.classifier if service is not None else None,
            aliases=self.kernel.bindings,
            enforce=policy is None or policy.mode == "enforce",
            comm_targets=self.kernel.comm_targets,
        )
        if verdict.action == "forward":
            self._send_on(msg)
            return
        if service is None:
            self._refuse(
                msg,
                "GovernanceUnavailable",
                f"the governance service is not running: {self.app.unavailable_reason}",
            )
            return
        outcome = "failure" if verdict.action == "refuse" else "success"
        try:
            await self._record_patiently(msg, verdict, outcome)
        except Exception as error:
            self._refuse(msg, "AuditUnavailable", RECORD_FAILED.format(error=error))
            return
        if verdict.action == "refuse":
            self._refuse(
                msg, "PolicyDenied" if msg.msg_type == "execute_request" else "RequestRefused", verdict.reason
            )
        elif verdict.action == "gate":
            await self._hold(msg, verdict)
        else:
            self._send_on(msg)

    def _send_on(self, msg: ClientMessage, approval_id: str | None = None) -> None:
        """Forward ``msg`` to the kernel (for a cell: with the server's metadata; then it binds names
        and the kernel owes a record of it)."""
        service = self.service
        if msg.msg_type == "execute_request":
            marks: dict[str, Any] = {"guard": "server"}
            if approval_id:
                marks["approval"] = approval_id
            msg = with_governed_metadata(msg, marks)
            if service is not None:
                code = str(msg.content.get("code", ""))
                self.kernel.bindings = service.classifier.bindings_after(code, self.kernel.bindings)
                service.witnesses.forwarded(self.kernel_id, msg.msg_id, self.username)
        elif msg.msg_type == "comm_open":
            comm_id, target = str(msg.content.get("comm_id", "")), str(msg.content.get("target_name", ""))
            self.kernel.comm_targets[comm_id] = target
        self.forward(encode(msg, self.protocol(), self.session.pack))

    async def _record_patiently(self, msg: ClientMessage, verdict: Verdict, outcome: str) -> None:
        """Record the request; in client mode, an unreachable service is waited for (bounded, with a
        notice to the client) before the request is refused: the request never passes unrecorded."""
        deadline = asyncio.get_running_loop().time() + self.app.service_wait_seconds
        noticed = False
        event = self._request_event(msg, verdict, outcome=outcome)  # one event id for every try
        while True:
            try:
                await self._store(event)
                return
            except ServiceUnavailable as error:
                if asyncio.get_running_loop().time() + SERVICE_RETRY_S > deadline:
                    raise
                if not noticed:
                    self._notice(
                        msg, SERVICE_WAIT_NOTICE.format(error=error, seconds=self.app.service_wait_seconds)
                    )
                    noticed = True
                await asyncio.sleep(SERVICE_RETRY_S)

    async def _wait_for_service(self, msg: ClientMessage, ready: Callable[[], bool]) -> None:
        """Client mode, no service yet: wait (bounded) for the server to reach it again."""
        deadline = asyncio.get_running_loop().time() + self.app.service_wait_seconds
        if not ready():
            self._notice(msg, SERVICE_WAIT_NOTICE.format(error=self.app.unavailable_reason,
                                                         seconds=self.app.service_wait_seconds))  # fmt: skip
        while not ready() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(SERVICE_RETRY_S)

    def _notice(self, msg: ClientMessage, text: str) -> None:
        """A line on the cell's stderr (the request is not answered yet)."""
        self.to_client("iopub", "stream", {"name": "stderr", "text": text + "\n"}, msg.header)

    async def _record(self, msg: ClientMessage, verdict: Verdict, *, outcome: str, **extra: Any) -> None:
        await self._store(self._request_event(msg, verdict, outcome=outcome, **extra))

    def _request_event(
        self, msg: ClientMessage, verdict: Verdict, *, outcome: str, **extra: Any
    ) -> AuditEvent:
        service = self.service
        assert service is not None
        event = request_event(
            msg, verdict, user=self.username, kernel_id=self.kernel_id, notebook=self.kernel.notebook,
            server=service.settings.server_id, client_addr=self.client_addr,
            policy_version=service.policy.version, password_prompt=self.kernel.password_prompt,
            outcome=outcome, extra=extra, mask=lambda text: str(service.masker.mask_text(text)[0]),
        )  # fmt: skip
        if msg.msg_type == "input_reply":
            self.kernel.password_prompt = False
        return event

    async def _store(self, event: AuditEvent) -> None:
        service = self.service
        assert service is not None
        await offload(service.audit.append, [event])

    # -- holding a cell --------------------------------------------------------------------------

    async def _hold(self, msg: ClientMessage, verdict: Verdict) -> None:
        service = self.service
        assert service is not None and verdict.decision is not None
        requester = KernelPrincipal(kernel_id=self.kernel_id, username=self.username)
        new = NewRequest(
            cell_hash=source_hash(verdict.source),
            code_masked=service.masker.mask_text(verdict.source)[0],
            policy_version=service.policy.version,
            rules=[finding_rule(f) for f in verdict.decision.findings if f.action != "allow"],
            notebook_path=service.masker.mask_text(self.kernel.notebook)[0],
            cell_id=str(msg.metadata.get("cellId", ""))[:128],
        )
        view = await offload(service.approvals.request, requester, new)
        if view.status == "pending" and view.uses == 0:
            service.announce("approval.requested", view, self.username)
        if view.status == "approved":  # still valid from an earlier run of the same cell
            self._send_on(msg, view.id)
            return
        hold = Hold()
        self.holds.add(hold)
        self.kernel.holds.add(hold)
        self.to_client("iopub", "status", {"execution_state": "busy"}, msg.header)
        status = ApprovalStatus(view.to_json(), service.policy, ClientPublisher(self, msg.header))
        try:
            status.show()
            view = await self._wait(view, hold, status)
        finally:
            self.holds.discard(hold)
            self.kernel.holds.discard(hold)
        if view.status == "approved":
            status.finish(view.to_json())
            self._send_on(msg, view.id)
            return
        if view.status == "pending":  # stopped: interrupted, or the client went away
            with contextlib.suppress(ApprovalError):
                view = await offload(service.approvals.cancel, requester, view.id)
                service.announce("approval.cancelled", view, self.username)
            status.finish_interrupted()
            ename = "KeyboardInterrupt"
            why = f"interrupted while waiting for approval; request {view.id} was cancelled"
        else:
            status.finish(view.to_json())
            ename, why = refusal(view.to_json())
        refused = Verdict("refuse", "refused", why, verdict.source, verdict.decision)
        await self._record(msg, refused, outcome="failure", approval_id=view.id)
        self._refuse(msg, ename, why, busy_sent=True)

    async def _wait(self, view: ApprovalView, hold: Hold, status: ApprovalStatus) -> ApprovalView:
        service = self.service
        assert service is not None
        while view.status == "pending" and hold.stopped is None:
            waiter = asyncio.ensure_future(service.waiters.wait(view.id, WAIT_SLICE_S))
            sleeper = asyncio.ensure_future(hold.sleep(WAIT_SLICE_S))
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            for task in (waiter, sleeper):
                task.cancel()
            if hold.stopped is not None:
                break
            view = await offload(service.current_approval, view.id)
            if view.status == "pending":
                status.update(view.to_json())
        return view

    # -- answering the client --------------------------------------------------------------------

    def _refuse(self, msg: ClientMessage, ename: str, evalue: str, *, busy_sent: bool = False) -> None:
        """Answer a request the kernel will never see, as the kernel would have answered an error."""
        if msg.msg_type != "execute_request":
            self.to_client("iopub", "stream", {"name": "stderr", "text": f"{ename}: {evalue}\n"}, msg.header)
            return
        if not busy_sent:
            self.to_client("iopub", "status", {"execution_state": "busy"}, msg.header)
        error = {"ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]}
        self.to_client("iopub", "error", error, msg.header)
        reply = {"status": "error", "execution_count": None, **error}
        self.to_client("shell", "execute_reply", reply, msg.header)
        self.to_client("iopub", "status", {"execution_state": "idle"}, msg.header)

    def to_client(self, channel: str, msg_type: str, content: dict[str, Any], parent: dict[str, Any]) -> None:
        message = self.session.msg(msg_type, content, parent=parent)
        self.write(channel, message)


_CLOSED_RULES = RequestSettings()
"""With no policy loaded: the defaults (no debugger, no subshells); every cell is refused anyway."""


def finding_rule(finding: Finding) -> dict[str, Any]:
    """A matched rule as an approval request names it (as the kernel names it in its own requests)."""
    return {
        "id": finding.rule_id,
        "action": finding.action,
        "reason": finding.reason,
        "pci": list(finding.pci),
        "span": finding.span.to_dict(),
    }
