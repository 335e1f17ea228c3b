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

from governed_server.audit_records import AuditEvent, AuditInputError
from governed_server.identity import KernelPrincipal
from governed_server.offload import offload
from governed_server.service.handlers.base import GovernanceHandler, KernelHandler
from governed_server.service.handlers.schemas import (
    LEASE,
    REGISTER_KERNEL,
    SERVER_FILE_RECORDS,
    SERVER_REPORT,
)

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
        if body.get("reinstate"):
            await self._reinstate(kernel_id, person.username, lease)
            return
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

    async def _reinstate(self, kernel_id: str, username: str, lease: timedelta) -> None:
        service = self.service
        expires = await offload(service.credentials.reinstate, kernel_id, username, lease)
        if expires is None:
            self.fail(410, f"the credentials of kernel {kernel_id} were revoked: restart the kernel")
        event = AuditEvent(
            event_type="credential.reinstated", user=username, kernel_id=kernel_id,
            client_addr=self.request.remote_ip or "", server=service.settings.server_id,
            details={"meaning": "the kernel's lease had lapsed (the service was unreachable longer than a "
                                "lease); its server renewed it", "expires_at": expires.isoformat()},
        )  # fmt: skip
        await offload(service.audit.append, [event])
        self.reply({"kernel_id": kernel_id, "expires_at": expires.isoformat(), "reinstated": True})


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
    """``POST /servers/records``: your server's guards masked a file or refused a save, or masked a
    message of one of your kernels (records its spool kept across a restart)."""

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"post": SERVER_FILE_RECORDS}

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        person = self.person()
        kernel_id = body.get("kernel_id", "")
        if kernel_id:
            owners = await offload(self.service.credentials.owners, kernel_id)
            if owners != {person.username}:
                self.fail(403, f"kernel {kernel_id} is not one of your kernels")
        server = KernelPrincipal(kernel_id=kernel_id, username=person.username, kind="server")
        try:
            stored = await offload(
                self.service.ingest_server_report, server, body, self.request.remote_ip or ""
            )
        except AuditInputError as error:
            self.fail(400, str(error))
        self.reply({"records": [{"seq": r.seq, "hash": r.hash} for r in stored]}, status=201)
