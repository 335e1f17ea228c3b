"""Kernel credentials for batch runs: a person mints one for a kernel they start outside Jupyter.

``jupyter governance run --url … --token …`` uses this, so a CI job's kernel acts for the CI user
exactly as a kernel that user started in JupyterLab would: it can open requests and send audit
records for itself, nothing more.
"""

from __future__ import annotations

from typing import Any, ClassVar

from jupyter_server.auth.decorator import authorized
from sqlalchemy import select
from tornado import web

from governed_server.ids import new_batch_kernel_id
from governed_server.offload import offload
from governed_server.service.handlers.base import GovernanceHandler
from governed_server.service.handlers.schemas import EMPTY
from governed_server.service.store import kernel_credentials


class CredentialsHandler(GovernanceHandler):
    """``POST /credentials``: a new kernel id and its credential, bound to you."""

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"post": EMPTY}

    @web.authenticated
    @authorized
    async def post(self) -> None:
        self.json_body()
        person = self.person()
        kernel_id = new_batch_kernel_id(self.service.masker)
        token = await offload(self.service.credentials.mint, kernel_id, person.username)
        self.reply({"kernel_id": kernel_id, "token": token, "user": person.username}, status=201)


class CredentialHandler(GovernanceHandler):
    """``DELETE /credentials/{kernel_id}``: revoke a batch credential you minted."""

    @web.authenticated
    @authorized
    async def delete(self, kernel_id: str) -> None:
        person = self.person()
        service = self.service

        def owners_of() -> set[str]:
            with service.store.read() as connection:
                query = select(kernel_credentials.c.username).where(
                    kernel_credentials.c.kernel_id == kernel_id
                )
                return {row.username for row in connection.execute(query)}

        owners = await offload(owners_of)
        if not owners:
            self.fail(404, f"no credential for kernel {kernel_id}")
        if owners != {person.username}:
            self.fail(403, "only the user a credential belongs to can revoke it")
        revoked = await offload(service.credentials.revoke, kernel_id)
        self.reply({"kernel_id": kernel_id, "revoked": revoked})
