"""Client of the governance API, as the kernel uses it: open approval requests, wait, use, audit.

The kernel reaches the service at ``GOVERNED_SERVICE_URL`` with its own credential
(``GOVERNED_KERNEL_TOKEN``), both injected by the server that started it (or by
``jupyter governance run``). Every failure becomes :class:`GovernanceUnavailable` with a message the
analyst can act on; callers fail closed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from governed_kernel.audit_stream import AuditStream, PendingBatch, StreamUnusable
from governed_kernel.client_errors import SETUP_HINT, ApprovalRefused, GovernanceUnavailable

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = ["SETUP_HINT", "ApprovalRefused", "GovernanceClient", "GovernanceUnavailable", "ServiceConfig"]

SERVICE_URL_ENV = "GOVERNED_SERVICE_URL"
TOKEN_ENV = "GOVERNED_KERNEL_TOKEN"
AUTH_SCHEME = "GovernedKernel"
AUDIT_STREAM_ENV = "GOVERNED_AUDIT_STREAM"
"""``0`` sends audit records over HTTP only (the stream is the default: one socket, cheaper per cell)."""


@dataclass(frozen=True)
class ServiceConfig:
    url: str
    token: str

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> ServiceConfig | None:
        env = os.environ if environ is None else environ
        url, token = env.get(SERVICE_URL_ENV, "").strip(), env.get(TOKEN_ENV, "").strip()
        if not url or not token:
            return None
        return cls(url=url if url.endswith("/") else url + "/", token=token)


class GovernanceClient:
    """Async client of the kernel endpoints (``/governance/api/kernel/…``).

    Audit records go over the audit stream (a WebSocket) when it can be opened, else over HTTP;
    approvals always use HTTP. httpx is imported on first use: most kernels only send audit records,
    and its import is a noticeable part of a kernel's start.
    """

    def __init__(self, config: ServiceConfig, *, timeout: float = 10.0, stream: bool | None = None) -> None:
        self.config = config
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._tls: ssl.SSLContext | None = None
        """Made ahead by :meth:`prepare_http` (building one is most of a client's cost)."""
        if stream is None:
            stream = os.environ.get(AUDIT_STREAM_ENV, "1").strip() not in ("0", "false", "no")
        self.stream = AuditStream(config.url, self._auth_header, timeout=timeout) if stream else None

    @property
    def _auth_header(self) -> str:
        return f"{AUTH_SCHEME} {self.config.token}"

    def prepare_http(self) -> None:
        """Import httpx and build its TLS context now (the kernel calls this in a thread when it is
        idle): otherwise the first approval of the kernel pays for both, ~0.1 s and several times
        that on a loaded machine, between the approver's decision and the cell running."""
        import httpx

        self._tls = httpx.create_ssl_context()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                base_url=self.config.url,
                headers={"Authorization": self._auth_header},
                timeout=httpx.Timeout(self.timeout, read=self.timeout + 65.0),
                transport=httpx.AsyncHTTPTransport(retries=2, verify=self._tls or True),
            )
        return self._client

    async def request_approval(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "kernel/approvals", json=body)

    async def wait(self, request_id: str, timeout: float) -> dict[str, Any]:
        seconds = max(0, min(60, int(timeout)))
        return await self._call("GET", f"kernel/approvals/{request_id}/wait", params={"timeout": seconds})

    async def use(
        self, request_id: str, cell_hash: str, records: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Use an approval; ``records`` (the cell's start record) are stored with the use or not at all."""
        body: dict[str, Any] = {"cell_hash": cell_hash}
        if records:
            body["records"] = records
        return await self._call("POST", f"kernel/approvals/{request_id}/use", json=body)

    async def cancel(self, request_id: str) -> dict[str, Any]:
        return await self._call("POST", f"kernel/approvals/{request_id}/cancel", json={})

    async def send_audit(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        if self.stream is not None:
            answer = await self.stream.send(records)
            if answer is not None:
                return answer
        return await self._call("POST", "kernel/audit", json={"records": records})

    def start_audit(self, records: list[dict[str, Any]]) -> PendingBatch | None:
        """Put ``records`` on the audit stream without waiting for the answer; None when the stream
        cannot be used now (then :meth:`send_audit` goes over HTTP)."""
        return self.stream.start(records) if self.stream is not None else None

    def finish_audit(self, pending: PendingBatch) -> dict[str, Any]:
        """Block until the service answered ``pending`` (raises like :meth:`send_audit`)."""
        assert self.stream is not None
        try:
            return self.stream.finish(pending)
        except StreamUnusable:
            raise GovernanceUnavailable(
                "the audit stream closed and could not be opened again; run the cell again"
            ) from None

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.close()
        if self._client is not None:
            await self._client.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        import httpx

        try:
            response = await self._http().request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise GovernanceUnavailable(
                f"the governance service at {self.config.url} cannot be reached ({type(error).__name__}: "
                f"{error}). Ask your administrator to check the Jupyter server."
            ) from None
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        message = body.get("message") if isinstance(body, dict) else None
        if response.status_code in (401, 503) or response.status_code >= 500:
            hint = SETUP_HINT if response.status_code == 401 else ""
            raise GovernanceUnavailable(
                f"the governance service refused this kernel (HTTP {response.status_code}: "
                f"{message or response.reason_phrase}). {hint}".strip()
            )
        if response.status_code == 403 and message and "credential" in message:
            raise GovernanceUnavailable(f"{message}.")
        if response.status_code >= 400:
            raise ApprovalRefused(response.status_code, message or f"HTTP {response.status_code}")
        if not isinstance(body, dict):
            raise GovernanceUnavailable(
                f"the governance service answered {path} with something that is not JSON"
            )
        return body
