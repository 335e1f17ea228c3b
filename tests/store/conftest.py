"""Store fixtures on top of ``db_url`` (tests/conftest.py: SQLite and a private PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import AuditPaths  # type: ignore[import-not-found]

from governed_server.service.audit import AuditLog
from governed_server.service.store import Store, open_store


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """An opened (migrated) store on a fresh database."""
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def audit_paths(tmp_path: Path) -> AuditPaths:
    return {"signing_key_path": tmp_path / "keys" / "audit.pem", "checkpoint_dir": tmp_path / "checkpoints"}


@pytest.fixture
def audit(store: Store, audit_paths: AuditPaths) -> AuditLog:
    """An audit log with a signing key and a checkpoint directory, no automatic checkpoints."""
    return AuditLog(store, checkpoint_every=None, **audit_paths)
