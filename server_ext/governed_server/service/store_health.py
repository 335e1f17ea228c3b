"""The store's real state, for the health endpoint: can a record be written now, and is the log sealed.

"The service is running" is not enough: a cell holding a lock on the SQLite file (where the jail is
not in place), a read-only disk or an unreachable PostgreSQL stop every cell (no start record, no
cell) while the service object is fine; a log whose last checkpoint is long past is unsealed. The
probe tries a write transaction with a short timeout (rolled back, nothing written) and compares
the newest checkpoint with the policy's interval.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select, text

from governed_server.service.store import Store
from governed_server.service.store.engine import sqlite_path
from governed_server.service.store.schema import audit_checkpoints, audit_head

PROBE_TIMEOUT_S = 0.5
OVERDUE_FACTOR = 2
"""A checkpoint is overdue when twice the policy's interval has passed with records not sealed."""


@dataclass(frozen=True)
class StoreHealth:
    state: str
    """``ok``, ``locked``, ``unwritable`` or ``unreachable``."""
    problem: str | None
    last_checkpoint: datetime | None
    unsealed_records: int
    checkpoint_overdue: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "problem": self.problem,
            "last_checkpoint": self.last_checkpoint.isoformat() if self.last_checkpoint else None,
            "unsealed_records": self.unsealed_records,
            "checkpoint_overdue": self.checkpoint_overdue,
        }


def probe(store: Store, checkpoint_interval_minutes: int, now: datetime | None = None) -> StoreHealth:
    now = now or datetime.now(timezone.utc)
    state, problem = _writable(store)
    if state == "unreachable":
        return StoreHealth(state, problem, None, 0, False)
    try:
        with store.read() as connection:
            head = connection.execute(select(audit_head.c.seq, audit_head.c.updated_at)).first()
            sealed = connection.execute(
                select(func.max(audit_checkpoints.c.seq), func.max(audit_checkpoints.c.signed_at))
            ).first()
    except Exception as error:
        return StoreHealth("unreachable", f"the store cannot be read: {error}", None, 0, False)
    head_seq = int(head.seq) if head is not None else 0
    sealed_seq = int(sealed[0]) if sealed is not None and sealed[0] is not None else 0
    signed_at = _aware(sealed[1]) if sealed is not None else None
    unsealed = max(0, head_seq - sealed_seq)
    since = signed_at or (_aware(head.updated_at) if head is not None else None)
    overdue = bool(
        unsealed
        and since is not None
        and now - since > timedelta(minutes=OVERDUE_FACTOR * checkpoint_interval_minutes)
    )
    return StoreHealth(state, problem, signed_at, unsealed, overdue)


def _writable(store: Store) -> tuple[str, str | None]:
    path = sqlite_path(store.engine.url)
    if path is not None:
        try:
            connection = sqlite3.connect(path, timeout=PROBE_TIMEOUT_S)
        except sqlite3.Error as error:
            return "unreachable", f"the SQLite store {path} cannot be opened: {error}"
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
        except sqlite3.OperationalError as error:
            if "locked" in str(error) or "busy" in str(error):
                return "locked", f"the SQLite store {path} is locked by another process: cells wait"
            return "unwritable", f"the SQLite store {path} cannot be written: {error}"
        finally:
            connection.close()
        return "ok", None
    try:
        with store.engine.connect() as pg:
            if pg.execute(text("SELECT pg_is_in_recovery()")).scalar():
                return "unwritable", "the PostgreSQL server is a read-only standby"
    except Exception as error:
        return "unreachable", f"the store cannot be reached: {error}"
    return "ok", None


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
