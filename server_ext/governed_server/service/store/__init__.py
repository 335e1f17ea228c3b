"""The governance store: SQLAlchemy schema, engines for SQLite and PostgreSQL, Alembic migrations.

- :class:`Store` / :func:`open_store` — open a URL, migrate to the newest schema, give transactions.
- :mod:`governed_server.service.store.schema` — the tables (approvals, kernel credentials, audit log).
- :class:`StoreError` — the store cannot be used; the message never holds the password.
"""

from governed_server.service.store.engine import StoreError, create_store_engine, normalise_url, redact
from governed_server.service.store.schema import (
    GENESIS_HASH,
    approval_decisions,
    approval_requests,
    audit_checkpoints,
    audit_head,
    audit_records,
    kernel_credentials,
    metadata,
)
from governed_server.service.store.store import Store, open_store

__all__ = [
    "GENESIS_HASH",
    "Store",
    "StoreError",
    "approval_decisions",
    "approval_requests",
    "audit_checkpoints",
    "audit_head",
    "audit_records",
    "create_store_engine",
    "kernel_credentials",
    "metadata",
    "normalise_url",
    "open_store",
    "redact",
]
