"""Client mode: a single-user server of a team deployment, governed by the shared service.

Under JupyterHub the store, the signing key, the checkpoints and the decisions live in the
governance service (its own OS user, docs/deploy-jupyterhub.md). The analyst's single-user server
keeps none of them: it registers each kernel it starts with the service (with the user's own Hub
token) and receives two credentials for that kernel alone, with a lease it renews; the kernel gets
one, the server keeps the other for its own records (what the inbound guard forwarded, refused or
held, what the guards masked) and for the approvals of the cells it holds.

:class:`RemoteService` stands where :class:`~governed_server.service.governance.GovernanceService` stands in a
single server, with the same names for what the guards use (``policy``, ``masker``, ``classifier``,
``audit.append``, ``approvals``, ``waiters``, ``witnesses``, ``credentials``), each a call to the
service. The policy is the file the spawner names; its version must be the service's (an approval
binds to it), else nothing is governed here and the reason says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from governed_kernel.masking import Masker, MaskingConfig
from governed_kernel.policy import Classifier, load_policy
from governed_server.approval_model import ApprovalError, NewRequest
from governed_server.audit_records import AuditEvent
from governed_server.identity import KernelPrincipal
from governed_server.names import AUTH_SCHEME, REVOKED_MESSAGE
from governed_server.offload import offload
from governed_server.single_user.spool import ReportSpool

log = logging.getLogger("governed_server")

LEASE_S = 300
RENEW_RETRY_S = 5.0
"""After a failed renewal (the service away), how often renewal is tried again."""
CALL_TIMEOUT_S = 10.0


class ServiceUnavailable(RuntimeError):
    """The governance service did not answer, or refused; the message says which and what to do."""


class CredentialRevoked(RuntimeError):
    """The service revoked a kernel's credentials (it shut down, or the Hub said its server stopped):
    nothing of that kernel is recorded or forwarded any more; it has to be restarted. Not waited for."""


class CredentialLapsed(ServiceUnavailable):
    """The service no longer takes a kernel's server credential: its lease ran out while the
    service was unreachable, or it was revoked. :meth:`RemoteCredentials.reinstate` tells which."""


@dataclass(frozen=True)
class RemoteSettings:
    server_id: str
    policy_version: str = ""


@dataclass
class RemoteView:
    """An approval request as the service answered it (what the inbound gate reads of a view)."""

    body: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def status(self) -> str:
        return str(self.body["status"])

    @property
    def uses(self) -> int:
        return int(self.body.get("uses", 0))

    @property
    def kernel_id(self) -> str:
        return str(self.body.get("kernel_id", ""))

    def to_json(self) -> dict[str, Any]:
        return dict(self.body)


@dataclass
class KernelLease:
    kernel_id: str
    username: str
    server_token: str
    forwarded: list[str] = field(default_factory=list)
    replied: list[dict[str, str]] = field(default_factory=list)
    gone: bool = False


class ServiceClient:
    """HTTP calls to the service's API: as the user (Hub token) or as one kernel's server."""

    def __init__(self, api_url: str, hub_token: str, timeout: float = CALL_TIMEOUT_S) -> None:
        self.api_url = api_url.rstrip("/") + "/"
        self.hub_token = hub_token
        self.http = httpx.Client(base_url=self.api_url, timeout=timeout)
        self.waits = httpx.AsyncClient(base_url=self.api_url, timeout=timeout + 65)

    def call(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> Any:
        """One call; raises :class:`ServiceUnavailable` (no answer, 5xx) or ApprovalError (4xx)."""
        headers = {"Authorization": f"{AUTH_SCHEME} {token}" if token else f"token {self.hub_token}"}
        try:
            response = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            raise ServiceUnavailable(
                f"the governance service at {self.api_url} did not answer: {error}"
            ) from None
        return _answer(response, self.api_url, lapsed=token is not None)

    async def wait(self, token: str, request_id: str, timeout: float) -> dict[str, Any]:
        headers = {"Authorization": f"{AUTH_SCHEME} {token}"}
        path = f"kernel/approvals/{request_id}/wait"
        try:
            response = await self.waits.get(path, params={"timeout": int(timeout)}, headers=headers)
        except httpx.HTTPError as error:
            raise ServiceUnavailable(
                f"the governance service at {self.api_url} did not answer: {error}"
            ) from None
        result: dict[str, Any] = _answer(response, self.api_url, lapsed=True)
        return result

    def close(self) -> None:
        self.http.close()


def _answer(response: httpx.Response, where: str, *, lapsed: bool = False) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text[:300]}
    not_taken = response.status_code == 401 or (
        response.status_code == 403 and isinstance(body, dict) and body.get("message") == REVOKED_MESSAGE
    )
    if lapsed and not_taken:
        raise CredentialLapsed(f"the governance service at {where} no longer takes this kernel's credential")
    if response.status_code >= 500 or response.status_code in (401, 502, 503, 504):
        message = body.get("message", "") if isinstance(body, dict) else ""
        raise ServiceUnavailable(
            f"the governance service at {where} answered {response.status_code}: {message}"
        )
    if response.status_code >= 400:
        message = body.get("message", "") if isinstance(body, dict) else str(body)
        raise ApprovalError(response.status_code, message)
    return body


class RemoteCredentials:
    """Kernels registered with the service: their leases, renewed while they live."""

    def __init__(self, client: ServiceClient, username: str) -> None:
        self.client = client
        self.username = username
        self.leases: dict[str, KernelLease] = {}
        self.lock = threading.Lock()
        self.renewed_at = time.monotonic()
        self.renew_failed = False
        self.revoked: dict[str, str] = {}
        """Kernel id → why its credentials are gone for good."""

    def mint(self, kernel_id: str, username: str) -> str:
        """Register the kernel (as this server's user); the kernel's own credential."""
        if username != self.username:
            raise ServiceUnavailable(
                f"this server belongs to {self.username}; it cannot start a kernel for {username}"
            )
        answer = self.client.call(
            "POST", "servers/kernels", json={"kernel_id": kernel_id, "lease_seconds": LEASE_S}
        )
        with self.lock:
            self.leases[kernel_id] = KernelLease(kernel_id, username, str(answer["server_token"]))
            self.revoked.pop(kernel_id, None)  # a restarted kernel keeps its id, with new credentials
        return str(answer["kernel_token"])

    def lease(self, kernel_id: str) -> KernelLease:
        with self.lock:
            lease = self.leases.get(kernel_id)
            revoked = self.revoked.get(kernel_id)
        if revoked is not None:
            raise CredentialRevoked(revoked)
        if lease is None:
            raise ServiceUnavailable(f"kernel {kernel_id} is not registered with the governance service")
        return lease

    def call(self, kernel_id: str, method: str, path: str, **kwargs: Any) -> Any:
        """A call with the kernel's server credential; a lapsed lease is reinstated, then the call
        made again (the kernel goes on, with the credentials it has, without a restart)."""
        try:
            return self.client.call(method, path, token=self.lease(kernel_id).server_token, **kwargs)
        except CredentialLapsed:
            self.reinstate(kernel_id)
            return self.client.call(method, path, token=self.lease(kernel_id).server_token, **kwargs)

    def reinstate(self, kernel_id: str) -> None:
        """Ask the service, as this server's user, for a new lease on the kernel's lapsed credentials;
        raises CredentialRevoked when they were revoked (the kernel has to be restarted)."""
        try:
            self.client.call(
                "POST", "servers/kernels",
                json={"kernel_id": kernel_id, "lease_seconds": LEASE_S, "reinstate": True},
            )  # fmt: skip
        except ApprovalError as error:
            reason = (
                f"the credentials of kernel {kernel_id} were revoked by the governance service "
                f"({error.message}): restart the kernel"
            )
            with self.lock:  # for good: its cells are refused from now on, with this reason
                self.leases.pop(kernel_id, None)
                self.revoked[kernel_id] = reason
            raise CredentialRevoked(reason) from None
        log.warning("governed_server: the lease of kernel %s had lapsed; reinstated", kernel_id)

    def revoke(self, kernel_id: str) -> int:
        with self.lock:
            lease = self.leases.pop(kernel_id, None)
        if lease is None:
            return 0
        answer = self.client.call("DELETE", f"servers/kernels/{kernel_id}", token=lease.server_token)
        return int(answer.get("revoked", 0))

    def renew_due(self) -> None:
        """Renew every lease when a third of a lease has passed since the last renewal, or every
        few seconds after one failed (the service was away: renewed as soon as it is back)."""
        now = time.monotonic()
        wait = RENEW_RETRY_S if self.renew_failed else LEASE_S / 3
        if now - self.renewed_at >= wait:
            self.renewed_at = now
            self.renew_failed = not self.renew_all()

    def renew_all(self) -> bool:
        """Renew every lease (a lapsed one is reinstated); a failure is logged. Whether all renewed."""
        with self.lock:
            kernel_ids = list(self.leases)
        renewed = True
        for kernel_id in kernel_ids:
            try:
                self.call(kernel_id, "POST", f"servers/kernels/{kernel_id}", json={"lease_seconds": LEASE_S})
            except ApprovalError as error:
                if error.status != 410:  # refused otherwise: logged, tried again in a few seconds
                    renewed = False
                    log.warning("governed_server: renewing the lease of kernel %s: %s", kernel_id, error)
                    continue
                try:  # the credentials lapsed between two renewals
                    self.reinstate(kernel_id)
                except (ServiceUnavailable, CredentialRevoked) as lapsed:
                    renewed = isinstance(lapsed, CredentialRevoked)  # nothing to try again
                    log.warning("governed_server: %s", lapsed)
            except CredentialRevoked as revoked:
                log.warning("governed_server: %s", revoked)
            except ServiceUnavailable as error:
                renewed = False
                log.warning("governed_server: could not renew the lease of kernel %s: %s", kernel_id, error)
        return renewed


class RemoteAudit:
    """The server's own records, sent to the service with the kernel's server credential."""

    def __init__(self, client: ServiceClient, credentials: RemoteCredentials) -> None:
        self.client = client
        self.credentials = credentials

    def append(self, events: Iterable[AuditEvent]) -> list[dict[str, Any]]:
        by_kernel: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            by_kernel.setdefault(event.kernel_id, []).append(_record(event))
        stored: list[dict[str, Any]] = []
        for kernel_id, records in by_kernel.items():
            stored += self.report(kernel_id, records=records)
        return stored

    def report(self, kernel_id: str, **body: Any) -> list[dict[str, Any]]:
        answer = self.credentials.call(kernel_id, "POST", f"servers/kernels/{kernel_id}/report", json=body)
        return list(answer.get("records", []))


def _record(event: AuditEvent) -> dict[str, Any]:
    """An event as the report endpoint takes it (the service stamps user and kernel itself)."""
    fields = asdict(event)
    for stamped in ("user", "kernel_id", "output_sha256", "output_size", "claimed_user"):
        fields.pop(stamped, None)
    fields["tables"] = list(fields.get("tables", ()))
    return {name: value for name, value in fields.items() if value not in (None, "", {}, [])}


class RemoteApprovals:
    """The approval requests of the cells this server holds, through the kernel's server credential."""

    def __init__(self, client: ServiceClient, credentials: RemoteCredentials) -> None:
        self.client = client
        self.credentials = credentials
        self.views: dict[str, RemoteView] = {}
        self.kernel_of: dict[str, str] = {}

    def request(self, requester: KernelPrincipal, new: NewRequest) -> RemoteView:
        body = {
            "cell_hash": new.cell_hash, "code": new.code_masked, "policy_version": new.policy_version,
            "rules": new.rules, "notebook_path": new.notebook_path, "cell_id": new.cell_id,
        }  # fmt: skip
        view = RemoteView(self.credentials.call(requester.kernel_id, "POST", "kernel/approvals", json=body))
        self._keep(view, requester.kernel_id)
        return view

    def get(self, request_id: str) -> RemoteView:
        view = self.views.get(request_id)
        if view is None:
            raise ApprovalError(404, f"no request {request_id} held by this server")
        return view

    def cancel(self, requester: KernelPrincipal, request_id: str) -> RemoteView:
        path = f"kernel/approvals/{request_id}/cancel"
        view = RemoteView(self.credentials.call(requester.kernel_id, "POST", path, json={}))
        self._keep(view, requester.kernel_id)
        return view

    async def wait(self, request_id: str, timeout: float) -> None:
        """Long-poll the service; the answer is what :meth:`get` returns next."""
        kernel_id = self.kernel_of.get(request_id)
        if kernel_id is None:
            await asyncio.sleep(timeout)
            return
        lease = self.credentials.lease(kernel_id)
        try:
            answer = await self.client.wait(lease.server_token, request_id, timeout)
        except CredentialLapsed:
            with contextlib.suppress(ServiceUnavailable, CredentialRevoked):  # revoked: the hold ends
                await offload(self.credentials.reinstate, kernel_id)
            return
        except ServiceUnavailable as error:
            log.warning("governed_server: waiting for request %s: %s", request_id, error)
            await asyncio.sleep(min(timeout, 1.0))  # the hold shows "waiting"; retried next slice
            return
        self._keep(RemoteView(answer), kernel_id)

    def _keep(self, view: RemoteView, kernel_id: str) -> None:
        if view.status == "pending":
            self.views[view.id] = view
            self.kernel_of[view.id] = kernel_id
        else:  # decided: kept for the gate's next read, then no longer waited for
            self.views[view.id] = view
            self.kernel_of.pop(view.id, None)


class RemoteWaiters:
    def __init__(self, approvals: RemoteApprovals) -> None:
        self.approvals = approvals

    async def wait(self, request_id: str, timeout: float) -> None:
        await self.approvals.wait(request_id, timeout)

    def wake(self, request_id: str) -> None:
        """Decisions are made at the service; nothing to wake here."""


class RemoteWitnesses:
    """What the service's witness book needs from this server, sent with the next report."""

    def __init__(self, credentials: RemoteCredentials, audit: RemoteAudit) -> None:
        self.credentials = credentials
        self.audit = audit

    def guards(self, kernel_id: str) -> None:
        """The service learns it at the first report."""

    def forwarded(self, kernel_id: str, msg_id: str, user: str) -> None:
        with self.credentials.lock:
            lease = self.credentials.leases.get(kernel_id)
            if lease is not None:
                lease.forwarded.append(msg_id)

    def replied(self, kernel_id: str, msg_id: str, status: str) -> None:
        with self.credentials.lock:
            lease = self.credentials.leases.get(kernel_id)
            if lease is not None:
                lease.replied.append({"msg_id": msg_id, "status": status})

    def kernel_gone(self, kernel_id: str) -> None:
        with self.credentials.lock:
            lease = self.credentials.leases.get(kernel_id)
            if lease is not None:
                lease.gone = True

    def flush(self) -> None:
        """Send what is pending for each kernel (a failed send is kept for the next flush)."""
        with self.credentials.lock:
            pending = [
                lease
                for lease in self.credentials.leases.values()
                if lease.forwarded or lease.replied or lease.gone
            ]
        for lease in pending:
            with self.credentials.lock:
                forwarded, replied, gone = lease.forwarded, lease.replied, lease.gone
                lease.forwarded, lease.replied, lease.gone = [], [], False
            try:
                self.audit.report(lease.kernel_id, forwarded=forwarded, replied=replied, gone=gone)
            except CredentialRevoked:
                continue  # the service forgot the kernel: nothing of it is witnessed any more
            except (ServiceUnavailable, ApprovalError) as error:
                log.warning("governed_server: witness report for kernel %s: %s", lease.kernel_id, error)
                with self.credentials.lock:
                    lease.forwarded[:0], lease.replied[:0] = forwarded, replied
                    lease.gone = lease.gone or gone


class RemoteService:
    """The shared service, as a single-user server in client mode uses it (see the module)."""

    remote = True

    def __init__(
        self, *, api_url: str, hub_token: str, username: str, policy_path: Any, server_id: str,
        spool_path: Path,
    ) -> None:  # fmt: skip
        self.policy = load_policy(policy_path)
        self.masker = Masker(MaskingConfig.from_mapping(self.policy.masking))
        self.classifier = Classifier(self.policy)
        self.client = ServiceClient(api_url, hub_token)
        health = self.client.call("GET", "health")
        service_version = str(health.get("policy_version") or "")
        if service_version and service_version != self.policy.version:
            raise ServiceUnavailable(
                f"the policy {policy_path} (version {self.policy.version[:19]}) is not the one the "
                f"governance service enforces ({service_version[:19]}): give this server the service's policy"
            )
        self.settings = RemoteSettings(server_id=server_id, policy_version=self.policy.version)
        self.credentials = RemoteCredentials(self.client, username)
        self.audit = RemoteAudit(self.client, self.credentials)
        self.approvals = RemoteApprovals(self.client, self.credentials)
        self.waiters = RemoteWaiters(self.approvals)
        self.witnesses = RemoteWitnesses(self.credentials, self.audit)
        self._settling = threading.Lock()
        self.spool = ReportSpool(spool_path)
        """What the guards did, on disk until the service has it (records left by an earlier run of
        this server included: they go with the first flush)."""

    def announce(self, event_type: str, view: Any, actor: str) -> None:
        """The service announces its own transitions."""

    def expire_due(self) -> None:
        """The service expires pending requests."""

    def current_approval(self, request_id: str) -> RemoteView:
        """The request as the service last answered about it."""
        return self.approvals.get(request_id)

    def settle_witnesses(self) -> None:
        """Every second: the witness book's updates, then the spooled records (and, when the
        service was away, the lease renewals it missed)."""
        if not self._settling.acquire(blocking=False):
            return  # the previous round is still on its way (a slow or absent service)
        try:
            self.witnesses.flush()
            self.credentials.renew_due()
            self.spool.flush(self._send_spooled)
        except ServiceUnavailable as error:
            log.debug(
                "governed_server: %d spooled record(s) wait for the service: %s", self.spool.count, error
            )
        finally:
            self._settling.release()

    def _send_spooled(self, kernel_id: str, records: list[dict[str, Any]]) -> None:
        """One kernel's spooled records: with its server credential while this server holds it,
        else (a kernel of an earlier run of this server, or none) as the user, for their own kernel."""
        try:
            if kernel_id and kernel_id in self.credentials.leases:
                self.audit.report(kernel_id, records=records)
            else:
                body: dict[str, Any] = {"records": records}
                if kernel_id:
                    body["kernel_id"] = kernel_id
                self.client.call("POST", "servers/records", json=body)
        except ApprovalError as error:  # refused for good (malformed, not the user's kernel): logged
            log.error(
                "governed_server: the governance service refused %d spooled record(s) of kernel %s: %s",
                len(records), kernel_id or "(none)", error.message,
            )  # fmt: skip

    def record_guard_event(self, kernel_id: str, msg_type: str, kinds: dict[str, int]) -> None:
        event = AuditEvent(
            event_type="guard.masked", user=self.credentials.username, outcome="failure",
            kernel_id=kernel_id, server=self.settings.server_id, masking=kinds,
            details={"msg_type": msg_type, "meaning": "the kernel sent an unmasked card number"},
        )  # fmt: skip
        self.spool.add(kernel_id, _record(event))

    def record_outbound_event(
        self, user: str, route: str, path: str, kinds: dict[str, int], *, refused: bool = False
    ) -> None:
        """File routes of this server: spooled, sent as the user (no kernel) at the next flush."""
        event = AuditEvent(
            event_type="guard.save_refused" if refused else "guard.masked", user=self.credentials.username,
            outcome="failure" if refused else "success", server=self.settings.server_id,
            notebook=path if path.endswith(".ipynb") else "", masking=kinds,
            details={"route": route, "path": path, "viewer": user},
        )  # fmt: skip
        self.spool.add("", _record(event))

    def close(self) -> None:
        self.spool.close()
        self.client.close()
