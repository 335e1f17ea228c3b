"""Per-kernel credentials: minted when the server starts a kernel, revoked when it shuts down.

A credential lets its kernel do three things for itself alone: open approval requests, wait for and
use them, and send audit records. User code inside the kernel can read it, so it grants nothing else
(no decisions, no reading the audit log). Only a SHA-256 of the token is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timezone

from sqlalchemy import and_, insert, select, update

from governed_server.identity import KernelPrincipal
from governed_server.store import Store, kernel_credentials

AUTH_SCHEME = "GovernedKernel"
"""``Authorization: GovernedKernel <token>``: the header a kernel sends to the governance API."""

TOKEN_ENV = "GOVERNED_KERNEL_TOKEN"
SERVICE_URL_ENV = "GOVERNED_SERVICE_URL"
USER_ENV = "GOVERNED_KERNEL_USER"
"""Informational copy of the user the credential is bound to (the server decides, not this value)."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class CredentialIssuer:
    """Mints, resolves and revokes kernel credentials in the store."""

    def __init__(self, store: Store, server_id: str = "") -> None:
        self.store = store
        self.server_id = server_id

    def mint(self, kernel_id: str, username: str) -> str:
        """A new secret for ``kernel_id``; earlier credentials of that kernel are revoked."""
        token = secrets.token_urlsafe(32)
        now = datetime.now(timezone.utc)
        with self.store.begin() as connection:
            connection.execute(
                update(kernel_credentials)
                .where(
                    and_(
                        kernel_credentials.c.kernel_id == kernel_id, kernel_credentials.c.revoked_at.is_(None)
                    )
                )
                .values(revoked_at=now)
            )
            connection.execute(
                insert(kernel_credentials).values(
                    token_hash=_digest(token),
                    kernel_id=kernel_id,
                    username=username,
                    server_id=self.server_id,
                    created_at=now,
                )
            )
        return token

    def resolve(self, token: str) -> KernelPrincipal | None:
        """The kernel a live token belongs to, or None."""
        if not token or len(token) > 256:
            return None
        digest = _digest(token)
        with self.store.read() as connection:
            row = connection.execute(
                select(kernel_credentials).where(kernel_credentials.c.token_hash == digest)
            ).first()
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return KernelPrincipal(kernel_id=row.kernel_id, username=row.username)

    def revoke(self, kernel_id: str) -> int:
        """Revoke every live credential of ``kernel_id``; returns how many."""
        with self.store.begin() as connection:
            result = connection.execute(
                update(kernel_credentials)
                .where(
                    and_(
                        kernel_credentials.c.kernel_id == kernel_id, kernel_credentials.c.revoked_at.is_(None)
                    )
                )
                .values(revoked_at=datetime.now(timezone.utc))
            )
        return int(result.rowcount or 0)
