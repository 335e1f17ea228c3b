"""Endpoints for single-user servers of a team deployment (the service runs as a JupyterHub service).

A single-user server registers each kernel it starts with the user's own Hub token and receives two
credentials for that kernel alone, with a lease: one it gives the kernel, one it keeps (its own
records of what it forwards). It renews the lease while the kernel lives; the service revokes both
when the lease ends, when the server deletes them, and when the Hub reports the server stopped.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from jupyter_server.auth.decorator import authorized
from tornado import web

from governed_server.audit_records import AuditInputError
from governed_server.handlers.base import GovernanceHandler, KernelHandler
from governed_server.handlers.schemas import LEASE, REGISTER_KERNEL, SERVER_FILE_RECORDS, SERVER_REPORT
from governed_server.identity import KernelPrincipal
from governed_server.offload import offload

DEFAULT_LEASE_S = 300


class ServerKernelsHandler(GovernanceHandler):
    """``POST /servers/kernels``: register a kernel of your own server; its credentials, bound to you."""

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"post": REGISTER_KERNEL}

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        person = self.person()
        credentials = self.service.credentials
        kernel_id = body["kernel_id"]
        owners = await offload(credentials.owners, kernel_id)
        if owners - {person.username}:
            self.fail(403, f"kernel {kernel_id} belongs to another user")
        lease = timedelta(seconds=body.get("lease_seconds", DEFAULT_LEASE_S))
        registration = await offload(credentials.register, kernel_id, person.username, lease)
        self.reply(
            {
                "kernel_id": kernel_id,
                "user": person.username,
                "kernel_token": registration.kernel_token,
                "server_token": registration.server_token,
                "expires_at": registration.expires_at.isoformat(),
                "policy_version": self.service.policy.version,
            },
            status=201,
        )


class ServerHandler(KernelHandler):
    """Endpoints for a kernel's server: the server credential, for the kernel in the path only."""

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        kernel_id = self.path_kwargs.get("kernel_id")
        if self.kernel.kind != "server":
            self.fail(403, "this endpoint needs the server credential of the kernel, not the kernel's own")
        if kernel_id is not None and kernel_id != self.kernel.kernel_id:
            self.fail(403, "this credential belongs to another kernel")


class ServerKernelHandler(ServerHandler):
    """``POST /servers/kernels/{id}/lease`` renews the lease; ``DELETE /servers/kernels/{id}`` ends it."""

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"post": LEASE}

    @web.authenticated
    async def post(self, kernel_id: str) -> None:
        body = self.json_body() or {}
        lease = timedelta(seconds=body.get("lease_seconds", DEFAULT_LEASE_S))
        expires = await offload(self.service.credentials.renew, kernel_id, lease)
        if expires is None:
            self.fail(410, f"the credentials of kernel {kernel_id} have lapsed; register it again")
        self.reply({"kernel_id": kernel_id, "expires_at": expires.isoformat()})

    @web.authenticated
    async def delete(self, kernel_id: str) -> None:
        revoked = await offload(self.service.credentials.revoke, kernel_id)
        self.reply({"kernel_id": kernel_id, "revoked": revoked})


class ServerReportHandler(ServerHandler):
    """``POST /servers/kernels/{id}/report``: the server's records of the kernel and witness updates."""

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"post": SERVER_REPORT}

    @web.authenticated
    async def post(self, kernel_id: str) -> None:
        body = self.json_body()
        try:
            stored = await offload(
                self.service.ingest_server_report, self.kernel, body, self.request.remote_ip or ""
            )
        except AuditInputError as error:
            self.fail(400, str(error))
        self.reply({"records": [{"seq": r.seq, "hash": r.hash} for r in stored]}, status=201)


class ServerRecordsHandler(GovernanceHandler):
    """``POST /servers/records``: your server's outbound guard masked a file or refused a save."""

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"post": SERVER_FILE_RECORDS}

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        person = self.person()
        server = KernelPrincipal(kernel_id="", username=person.username, kind="server")
        try:
            stored = await offload(
                self.service.ingest_server_report, server, body, self.request.remote_ip or ""
            )
        except AuditInputError as error:
            self.fail(400, str(error))
        self.reply({"records": [{"seq": r.seq, "hash": r.hash} for r in stored]}, status=201)
