"""Per-kernel credentials: minted when the server starts a kernel, revoked when it shuts down.

A credential lets its kernel do three things for itself alone: open approval requests, wait for and
use them, and send audit records. User code inside the kernel can read it, so it grants nothing else
(no decisions, no reading the audit log). Only a SHA-256 of the token is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, insert, select, update

from governed_server.identity import KernelPrincipal
from governed_server.service.store import Store, kernel_credentials

KINDS = ("kernel", "server")


@dataclass(frozen=True)
class Registration:
    """The two credentials of a kernel registered by a single-user server, and when they lapse."""

    kernel_id: str
    username: str
    kernel_token: str
    server_token: str
    expires_at: datetime


def _revoke_live(connection: Any, kernel_id: str, now: datetime) -> int:
    """Revoke every live credential of ``kernel_id`` (in the caller's transaction); how many."""
    result = connection.execute(
        update(kernel_credentials)
        .where(and_(kernel_credentials.c.kernel_id == kernel_id, kernel_credentials.c.revoked_at.is_(None)))
        .values(revoked_at=now)
    )
    return int(result.rowcount or 0)


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
            _revoke_live(connection, kernel_id, now)
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

    def register(self, kernel_id: str, username: str, lease: timedelta) -> Registration:
        """A kernel credential and a server credential for ``kernel_id``, both ending after ``lease``
        unless renewed; earlier credentials of the kernel are revoked. The caller checks that the
        kernel is not another user's (:meth:`owners`)."""
        kernel_token, server_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = datetime.now(timezone.utc)
        expires = now + lease
        with self.store.begin() as connection:
            _revoke_live(connection, kernel_id, now)
            for token, kind in ((kernel_token, "kernel"), (server_token, "server")):
                connection.execute(
                    insert(kernel_credentials).values(
                        token_hash=_digest(token), kernel_id=kernel_id, username=username,
                        server_id=self.server_id, created_at=now, kind=kind, expires_at=expires,
                    )
                )  # fmt: skip
        return Registration(kernel_id, username, kernel_token, server_token, expires)

    def renew(self, kernel_id: str, lease: timedelta) -> datetime | None:
        """Extend the lease of the kernel's live credentials; None when none is live any more."""
        return self._extend(kernel_id, lease, kernel_credentials.c.expires_at > datetime.now(timezone.utc))

    def reinstate(self, kernel_id: str, username: str, lease: timedelta) -> datetime | None:
        """A new lease for credentials of ``username``'s kernel that lapsed only because they were not
        renewed in time (the service was unreachable longer than a lease): the kernel goes on with
        the credentials it has. Revoked credentials (the kernel shut down, the Hub said its server
        stopped) stay revoked: None."""
        return self._extend(kernel_id, lease, kernel_credentials.c.username == username)

    def _extend(self, kernel_id: str, lease: timedelta, condition: Any) -> datetime | None:
        """A new end for the kernel's leased, unrevoked credentials that meet ``condition``."""
        expires = datetime.now(timezone.utc) + lease
        with self.store.begin() as connection:
            result = connection.execute(
                update(kernel_credentials)
                .where(
                    and_(
                        kernel_credentials.c.kernel_id == kernel_id,
                        kernel_credentials.c.revoked_at.is_(None),
                        kernel_credentials.c.expires_at.is_not(None),
                        condition,
                    )
                )
                .values(expires_at=expires)
            )
        return expires if result.rowcount else None

    def owners(self, kernel_id: str) -> set[str]:
        """Every user a credential of ``kernel_id`` was ever minted for."""
        with self.store.read() as connection:
            query = select(kernel_credentials.c.username).where(kernel_credentials.c.kernel_id == kernel_id)
            return {row.username for row in connection.execute(query)}

    def leased_users(self) -> dict[str, set[str]]:
        """User → kernel ids with a live lease (the service checks those servers are still running)."""
        now = datetime.now(timezone.utc)
        with self.store.read() as connection:
            rows = connection.execute(
                select(kernel_credentials.c.username, kernel_credentials.c.kernel_id).where(
                    and_(
                        kernel_credentials.c.revoked_at.is_(None),
                        kernel_credentials.c.expires_at.is_not(None),
                        kernel_credentials.c.expires_at > now,
                    )
                )
            )
            users: dict[str, set[str]] = {}
            for row in rows:
                users.setdefault(row.username, set()).add(row.kernel_id)
        return users

    def resolve(self, token: str) -> KernelPrincipal | None:
        """The kernel a live token belongs to, or None (revoked, or its lease ended)."""
        if not token or len(token) > 256:
            return None
        digest = _digest(token)
        with self.store.read() as connection:
            row = connection.execute(
                select(kernel_credentials).where(kernel_credentials.c.token_hash == digest)
            ).first()
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
            return None
        if row.expires_at is not None and row.expires_at <= datetime.now(timezone.utc):
            return None
        return KernelPrincipal(kernel_id=row.kernel_id, username=row.username, kind=row.kind)

    def revoke(self, kernel_id: str) -> int:
        """Revoke every live credential of ``kernel_id``; returns how many."""
        with self.store.begin() as connection:
            return _revoke_live(connection, kernel_id, datetime.now(timezone.utc))
