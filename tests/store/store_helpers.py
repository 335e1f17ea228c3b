"""Helpers for the store tests: events to append and direct (attacker's) access to the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

from sqlalchemy import text

from governed_server.audit_records import record_hash
from governed_server.service.audit import AuditEvent, AuditLog
from governed_server.service.store import Store


def event(n: int, **overrides: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "event_type": "cell.executed",
        "user": "alice",
        "kernel_id": "k-1",
        "notebook": "work/cards.ipynb",
        "cell_id": f"cell-{n}",
        "code": f"x = {n}",
        "output": f"out {n}",
        "details": {"n": n},
    }
    fields.update(overrides)
    return AuditEvent(**fields)


def fill(audit: AuditLog, count: int, batch: int = 5) -> None:
    for start in range(0, count, batch):
        audit.append([event(n) for n in range(start, min(count, start + batch))])


def sql(store: Store, statement: str, **params: Any) -> Any:
    with store.begin() as connection:
        return connection.execute(text(statement), params)


def row(store: Store, seq: int) -> Any:
    with store.read() as connection:
        return connection.execute(text("SELECT * FROM audit_records WHERE seq = :s"), {"s": seq}).one()


def rehash_from(store: Store, seq: int) -> None:
    """What a careful attacker does after an edit: recompute the hashes of the edited suffix."""
    with store.begin() as connection:
        rows = connection.execute(
            text("SELECT seq, body FROM audit_records WHERE seq >= :s ORDER BY seq"), {"s": seq}
        ).all()
        prev = connection.execute(
            text("SELECT hash FROM audit_records WHERE seq = :s"), {"s": seq - 1}
        ).scalar_one()
        for r in rows:
            digest = record_hash(r.seq, prev, r.body)
            connection.execute(
                text("UPDATE audit_records SET prev_hash = :p, hash = :h WHERE seq = :s"),
                {"p": prev, "h": digest, "s": r.seq},
            )
            prev = digest
        connection.execute(
            text("UPDATE audit_head SET seq = (SELECT MAX(seq) FROM audit_records), hash = :h WHERE id = 1"),
            {"h": prev},
        )


def renumber(store: Store, start: int, delta: int) -> None:
    """Shift the seq of records >= start by delta (in two steps: seq is a primary key)."""
    sql(store, "UPDATE audit_records SET seq = -(seq + :d) WHERE seq >= :s", d=delta, s=start)
    sql(store, "UPDATE audit_records SET seq = -seq WHERE seq < 0")


def set_head(store: Store, seq: int) -> None:
    h = row(store, seq).hash
    sql(store, "UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1", s=seq, h=h)


class AuditPaths(TypedDict):
    """The ``audit_paths`` fixture: keyword arguments of AuditLog."""

    signing_key_path: Path
    checkpoint_dir: Path
