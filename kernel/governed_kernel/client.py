"""Client of the governance API, as the kernel uses it: open approval requests, wait, use, audit.

The kernel reaches the service at ``GOVERNED_SERVICE_URL`` with its own credential
(``GOVERNED_KERNEL_TOKEN``), both injected by the server that started it (or by
``jupyter governance run``). Every failure becomes :class:`GovernanceUnavailable` with a message the
analyst can act on; callers fail closed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

SERVICE_URL_ENV = "GOVERNED_SERVICE_URL"
TOKEN_ENV = "GOVERNED_KERNEL_TOKEN"
AUTH_SCHEME = "GovernedKernel"
SETUP_HINT = (
    "Start the notebook from JupyterLab with the governed_server extension enabled, or run it with "
    "`jupyter governance run NOTEBOOK`; for other runners set GOVERNED_SERVICE_URL and "
    "GOVERNED_KERNEL_TOKEN (see docs/batch.md)."
)


class GovernanceUnavailable(RuntimeError):
    """The governance service cannot be used (not configured, unreachable, refused): fail closed."""


class ApprovalRefused(RuntimeError):
    """The service answered, and the answer is no (403/404/409): the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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
    """Async HTTP client of the kernel endpoints (``/governance/api/kernel/…``)."""

    def __init__(self, config: ServiceConfig, *, timeout: float = 10.0) -> None:
        self.config = config
        self._client = httpx.AsyncClient(
            base_url=config.url,
            headers={"Authorization": f"{AUTH_SCHEME} {config.token}"},
            timeout=httpx.Timeout(timeout, read=timeout + 65.0),
            transport=httpx.AsyncHTTPTransport(retries=2),
        )

    async def request_approval(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "kernel/approvals", json=body)

    async def wait(self, request_id: str, timeout: float) -> dict[str, Any]:
        seconds = max(0, min(60, int(timeout)))
        return await self._call("GET", f"kernel/approvals/{request_id}/wait", params={"timeout": seconds})

    async def use(self, request_id: str, cell_hash: str) -> dict[str, Any]:
        return await self._call("POST", f"kernel/approvals/{request_id}/use", json={"cell_hash": cell_hash})

    async def cancel(self, request_id: str) -> dict[str, Any]:
        return await self._call("POST", f"kernel/approvals/{request_id}/cancel", json={})

    async def send_audit(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._call("POST", "kernel/audit", json={"records": records})

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._client.request(method, path, **kwargs)
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
