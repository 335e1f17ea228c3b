"""The tamper-evident audit log: append, query, checkpoint, verify (PCI DSS 10.2, 10.3, 10.5).

Every record is hash-chained to the one before in a single total order: appends lock the one-row
chain head (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite ``BEGIN IMMEDIATE``), so any number of
writers in any number of processes and servers produce one chain with no forks. Signed checkpoints
(:mod:`governed_server.service.audit_checkpoints`) seal the head in the database and in files outside it.

Exactly once: every record carries an event id made where it was made; a record whose id is
already stored (a batch sent again after a lost answer) is not stored again, and the append returns
the stored one (``fresh=False``). The check runs under the head lock, so two retries racing each
other cannot both insert (and the unique index would refuse it if they could).

Fail closed: :meth:`AuditLog.append` either commits every record of the batch or raises
:class:`AuditError` (or :class:`AuditInputError` for a malformed event) — nothing is dropped silently.
See ``docs/audit.md`` for the record fields and how auditors verify the log.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, bindparam, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from governed_kernel.masking import Masker
from governed_server.audit_records import (
    DEFAULT_OUTPUT_CAP,
    AuditEvent,
    AuditInputError,
    PreparedEvent,
    StoredRecord,
    finish_body,
    prepare,
    record_hash,
    utc_now,
)
from governed_server.service import audit_checkpoints as cp
from governed_server.service.append_combiner import AppendCombiner
from governed_server.service.audit_checkpoints import Checkpoint, CheckpointError
from governed_server.service.audit_verify import Problem, VerifyReport, verify_chain
from governed_server.service.store import Store, audit_checkpoints, audit_head, audit_records
from governed_server.service.store.engine import describe_error, redact

log = logging.getLogger(__name__)

MAX_QUERY_LIMIT = 10_000
FORK_REFUSED = "the audit chain head moved during an append (lock not held): refusing to fork"
SIGNING_KEY_FILE = "audit-signing-key.pem"
CHECKPOINT_DIR = "checkpoints"


class AuditError(RuntimeError):
    """The audit log could not be written or read; the caller must not carry on as if it had."""


def default_checkpoint_dir(store: Store) -> Path:
    """Beside the SQLite file; for PostgreSQL, in the Jupyter data dir (configure it elsewhere)."""
    return _default_dir(store) / CHECKPOINT_DIR


def default_signing_key_path() -> Path:
    """``<jupyter data dir>/governance/audit-signing-key.pem`` (as the server extension's default)."""
    from governed_server.paths import default_store_dir

    return default_store_dir() / SIGNING_KEY_FILE


def _default_dir(store: Store) -> Path:
    path = store.sqlite_path
    if path is not None:
        return path.parent
    from governed_server.paths import default_store_dir

    return default_store_dir()


class AuditLog:
    """The audit log on a :class:`~governed_server.service.store.Store`.

    ``signing_key_path``: Ed25519 private key (created 0600 on first checkpoint); None for a
    verify-only log. ``checkpoint_dir``: where checkpoints and the public key are also written
    (None: database only, truncation of the tail cannot be proven). ``checkpoint_every``: sign
    the head automatically every N records (None: only :meth:`checkpoint`, e.g. at shutdown).
    """

    def __init__(
        self,
        store: Store,
        *,
        signing_key_path: str | Path | None,
        checkpoint_dir: str | Path | None,
        checkpoint_every: int | None = None,
        output_cap: int = DEFAULT_OUTPUT_CAP,
        masker: Masker | None = None,
        public_keys: Iterable[str | Path] = (),
    ) -> None:
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError("checkpoint_every must be a positive number of records or None")
        if output_cap < 0:
            raise ValueError("output_cap must be >= 0")
        self.store = store
        self.signing_key_path = Path(signing_key_path).expanduser() if signing_key_path else None
        self.checkpoint_dir = Path(checkpoint_dir).expanduser() if checkpoint_dir else None
        self.checkpoint_every = checkpoint_every
        self.output_cap = output_cap
        self.masker = masker
        self.public_key_paths = [Path(p).expanduser() for p in public_keys]
        self._key: Ed25519PrivateKey | None = None
        self._lock = threading.Lock()
        self._last_checkpoint_seen = 0
        self._sqlite_statements: _SqliteStatements | None = None
        self.combiner: AppendCombiner[list[PreparedEvent], list[StoredRecord]] = AppendCombiner(
            self._write_groups
        )
        """Concurrent appends of this process share transactions (see the combiner's module)."""

    # -- writing -----------------------------------------------------------------------------------

    def append(
        self, events: Sequence[AuditEvent], *, connection: Connection | None = None
    ) -> list[StoredRecord]:
        """Append ``events`` in one transaction, in order; returns the stored records.

        With ``connection``, the records join the caller's open transaction (so, e.g., an approval
        transition and its record commit or roll back together); call :meth:`checkpoint_if_due`
        after that transaction commits. Raises AuditInputError (nothing written) or AuditError.
        """
        prepared = [prepare(event, output_cap=self.output_cap, masker=self.masker) for event in events]
        if not prepared:
            return []
        for item in prepared:
            if item.ingest_masked:
                log.warning(
                    "audit ingest masked %d unmasked card number(s) in a %s event",
                    item.ingest_masked,
                    item.body["event_type"],
                )
        try:
            if connection is not None:
                return _only(self._write_group(connection, [prepared]))
            records = self.combiner.append(prepared)
        except (SQLAlchemyError, sqlite3.Error) as error:
            raise AuditError(
                f"audit records could not be written to {redact(self.store.engine.url)}: "
                f"{describe_error(error, self.store.engine.url)}"
            ) from error
        self._after_commit(max(record.seq for record in records))
        return records

    def _write_groups(self, batches: list[list[PreparedEvent]]) -> list[list[StoredRecord] | BaseException]:
        """The combiner's writer: the batches waiting at this moment, in one transaction."""
        if self.store.dialect == "sqlite":
            return self._write_group_sqlite(batches)
        with self.store.begin() as connection:
            return self._write_group(connection, batches)

    def _write_group(
        self, connection: Connection, batches: list[list[PreparedEvent]]
    ) -> list[list[StoredRecord] | BaseException]:
        head = _lock_head(connection)
        t = audit_records.c
        ids = {item.body["event_id"] for batch in batches for item in batch}
        stored = connection.execute(
            select(t.event_id, t.seq, t.body, t.prev_hash, t.hash).where(t.event_id.in_(ids))
        ).all()
        now = utc_now()
        rows, outcomes = _plan(batches, stored, int(head.seq), str(head.hash), now)
        if rows:
            connection.execute(_INSERT_RECORDS, rows)
            last = rows[-1]
            moves = {
                "expected_seq": head.seq,
                "new_seq": last["seq"],
                "new_hash": last["hash"],
                "moved_at": now,
            }
            moved = connection.execute(_MOVE_HEAD, moves).rowcount
            if moved != 1:  # pragma: no cover - impossible while the head row is locked
                raise AuditError(FORK_REFUSED)
        return outcomes

    def _write_group_sqlite(
        self, batches: list[list[PreparedEvent]]
    ) -> list[list[StoredRecord] | BaseException]:
        """:meth:`_write_group` on SQLite's own cursor: the same statements and stored values (the
        columns' SQLAlchemy bind processors are applied), a third of the time per cell."""
        statements = self._sqlite_statements
        if statements is None:
            statements = self._sqlite_statements = _SqliteStatements(self.store)
        ids = list(dict.fromkeys(item.body["event_id"] for batch in batches for item in batch))
        with self.store.sqlite_write() as cursor:
            seq, prev = cursor.execute(_SQLITE_HEAD).fetchone()
            stored: list[Any] = []
            for start in range(0, len(ids), 900):  # SQLite's bound parameters per statement
                chunk = ids[start : start + 900]
                stored += cursor.execute(_SQLITE_KNOWN.format(", ".join("?" * len(chunk))), chunk).fetchall()
            now = utc_now()
            rows, outcomes = _plan(batches, stored, int(seq), str(prev), now)
            if rows:
                cursor.executemany(statements.insert, [statements.values(row) for row in rows])
                cursor.execute(
                    _SQLITE_MOVE_HEAD, (rows[-1]["seq"], rows[-1]["hash"], statements.time(now), seq)
                )
                if cursor.rowcount != 1:  # pragma: no cover - impossible while the write lock is held
                    raise AuditError(FORK_REFUSED)
        return outcomes

    def _after_commit(self, last_seq: int) -> None:
        every = self.checkpoint_every
        if every is None or last_seq - self._last_checkpoint_seen < every:
            return
        try:
            self.checkpoint_if_due()
        except (AuditError, CheckpointError, OSError) as error:
            # The records are committed; a late checkpoint is retried at the next append.
            log.error("automatic audit checkpoint failed: %s", error)

    # -- checkpoints -------------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head (DB row + file line); None when the log is empty.

        Returns the existing checkpoint when the head is already checkpointed.
        """
        return self._checkpoint(force=True)

    def checkpoint_if_due(self) -> Checkpoint | None:
        """Checkpoint when ``checkpoint_every`` records were added since the last checkpoint."""
        if self.checkpoint_every is None:
            return None
        return self._checkpoint(force=False)

    def _checkpoint(self, *, force: bool) -> Checkpoint | None:
        key = self._signing_key()
        try:
            with self.store.begin() as connection:
                head = _lock_head(connection)
                latest = _latest_checkpoint(connection)
                last_seq = latest.seq if latest else 0
                self._last_checkpoint_seen = max(self._last_checkpoint_seen, last_seq)
                if head.seq == 0:
                    return None
                if latest is not None and latest.seq == head.seq:
                    return latest
                if not force and head.seq - last_seq < (self.checkpoint_every or 0):
                    return None
                checkpoint = cp.sign(key, int(head.seq), str(head.hash), utc_now())
                # File first: it vouches for records already committed, so it is true even if the
                # row below never commits; the reverse order could lose the outside copy.
                if self.checkpoint_dir is not None:
                    cp.write_public_key(self.checkpoint_dir, key.public_key())
                    cp.append_to_file(self.checkpoint_dir, checkpoint)
                connection.execute(
                    audit_checkpoints.insert().values(
                        seq=checkpoint.seq,
                        head_hash=checkpoint.head_hash,
                        signed_at=checkpoint.signed_at,
                        key_id=checkpoint.key_id,
                        signature=checkpoint.signature,
                    )
                )
        except SQLAlchemyError as error:
            raise AuditError(
                f"audit checkpoint could not be written: {describe_error(error, self.store.engine.url)}"
            ) from error
        except OSError as error:
            raise AuditError(
                f"audit checkpoint could not be written to {self.checkpoint_dir}: {error}"
            ) from error
        self._last_checkpoint_seen = checkpoint.seq
        return checkpoint

    def _signing_key(self) -> Ed25519PrivateKey:
        with self._lock:
            if self._key is None:
                if self.signing_key_path is None:
                    raise AuditError("no signing key configured: this audit log can only be verified")
                self._key = cp.load_or_create_key(self.signing_key_path)
            return self._key

    def checkpoints(self) -> list[Checkpoint]:
        """Checkpoints from the database and from the checkpoint files, deduplicated."""
        with self.store.read() as connection:
            rows = connection.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.seq)).all()
        from_db = [Checkpoint(int(r.seq), r.head_hash, r.signed_at, r.key_id, r.signature) for r in rows]
        from_files, _errors = cp.read_files(self.checkpoint_dir)
        return cp.unique(from_db + from_files)

    # -- reading -----------------------------------------------------------------------------------

    def query(
        self,
        *,
        user: str | None = None,
        event_type: str | None = None,
        kernel_id: str | None = None,
        notebook: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        after_seq: int | None = None,
    ) -> list[StoredRecord]:
        """Records in sequence order matching every given filter.

        ``user`` matches the authenticated or the claimed (batch) user; ``since`` is inclusive,
        ``until`` exclusive; page with ``after_seq`` = the last seq of the previous page.
        """
        if not 1 <= limit <= MAX_QUERY_LIMIT:
            raise AuditInputError(f"limit must be between 1 and {MAX_QUERY_LIMIT}")
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise AuditInputError(f"{name} must be timezone-aware")
        t = audit_records.c
        stmt = select(t.seq, t.body, t.prev_hash, t.hash).order_by(t.seq).limit(limit)
        if user is not None:
            stmt = stmt.where(or_(t.user == user, t.claimed_user == user))
        if event_type is not None:
            stmt = stmt.where(t.event_type == event_type)
        if kernel_id is not None:
            stmt = stmt.where(t.kernel_id == kernel_id)
        if notebook is not None:
            stmt = stmt.where(t.notebook == notebook)
        if since is not None:
            stmt = stmt.where(t.event_time >= since)
        if until is not None:
            stmt = stmt.where(t.event_time < until)
        if after_seq is not None:
            stmt = stmt.where(t.seq > after_seq)
        try:
            with self.store.read() as connection:
                rows = connection.execute(stmt).all()
        except SQLAlchemyError as error:
            raise AuditError(
                f"the audit log could not be read: {describe_error(error, self.store.engine.url)}"
            ) from error
        return [StoredRecord.from_body(int(r.seq), r.body, r.prev_hash, r.hash) for r in rows]

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest record; (0, genesis hash) when empty."""
        with self.store.read() as connection:
            row = connection.execute(
                select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
            ).one()
        return int(row.seq), str(row.hash)

    # -- verifying ---------------------------------------------------------------------------------

    def trusted_keys(self) -> dict[str, Ed25519PublicKey]:
        """Keys checkpoints may be signed with: given files, the checkpoint dir, our own key."""
        keys = cp.directory_public_keys(self.checkpoint_dir)
        paths = list(self.public_key_paths)
        if self.signing_key_path is not None and self.signing_key_path.exists():
            paths.append(self.signing_key_path)
        for path in paths:
            try:
                key = cp.load_public_key(path)
            except (OSError, ValueError, CheckpointError) as error:
                raise AuditError(f"cannot read public key {path}: {error}") from None
            keys[cp.key_id_of(key)] = key
        return keys

    def verify(self, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Check the whole chain, the head and every checkpoint; see :class:`VerifyReport`."""
        keys = self.trusted_keys()
        file_checkpoints, file_errors = cp.read_files(self.checkpoint_dir)
        try:
            with self.store.read() as connection:
                rows = connection.execute(select(audit_checkpoints)).all()
                db_checkpoints = [
                    Checkpoint(int(r.seq), r.head_hash, r.signed_at, r.key_id, r.signature) for r in rows
                ]
                report = verify_chain(connection, db_checkpoints + file_checkpoints, keys, progress)
        except SQLAlchemyError as error:
            raise AuditError(
                f"the audit log could not be read: {describe_error(error, self.store.engine.url)}"
            ) from error
        report.warnings.extend(file_errors)
        if self.checkpoint_dir is None:
            report.warnings.append(
                "no checkpoint directory: deletion of the newest records is provable only "
                "from the database's own checkpoints"
            )
        elif not file_checkpoints and db_checkpoints:
            report.warnings.append(f"no checkpoint file in {self.checkpoint_dir}")
        in_files = {c.identity() for c in file_checkpoints}
        missing = [c.seq for c in db_checkpoints if c.identity() not in in_files]
        if file_checkpoints and missing:
            report.warnings.append(f"{len(missing)} database checkpoint(s) not in the checkpoint files")
        return report


# Built once: every cell's records go through these, and building a statement costs more than
# running it on SQLite.
_LOCK_HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
_INSERT_RECORDS = audit_records.insert()
_MOVE_HEAD = (
    update(audit_head)
    .where(audit_head.c.id == 1, audit_head.c.seq == bindparam("expected_seq"))
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"), updated_at=bindparam("moved_at"))
)


_SQLITE_HEAD = "SELECT seq, hash FROM audit_head WHERE id = 1"
_SQLITE_MOVE_HEAD = "UPDATE audit_head SET seq = ?, hash = ?, updated_at = ? WHERE id = 1 AND seq = ?"
_SQLITE_KNOWN = "SELECT event_id, seq, body, prev_hash, hash FROM audit_records WHERE event_id IN ({})"


class _SqliteStatements:
    """The record insert for SQLite's cursor, with each column's SQLAlchemy bind processor (so a
    row is stored exactly as :data:`_INSERT_RECORDS` would store it)."""

    def __init__(self, store: Store) -> None:
        dialect = store.engine.dialect
        columns = list(audit_records.columns)
        self.names = [column.name for column in columns]
        self.insert = (
            f"INSERT INTO audit_records ({', '.join(f'{chr(34)}{n}{chr(34)}' for n in self.names)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        self.processors = [column.type.dialect_impl(dialect).bind_processor(dialect) for column in columns]
        time_processor = audit_head.c.updated_at.type.dialect_impl(dialect).bind_processor(dialect)
        self.time: Callable[[Any], Any] = time_processor or (lambda value: value)

    def values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            process(row[name]) if process is not None else row[name]
            for name, process in zip(self.names, self.processors, strict=True)
        )


def _link(
    prepared: list[PreparedEvent], seq: int, prev: str, now: datetime
) -> tuple[list[dict[str, Any]], list[StoredRecord]]:
    """Number and chain ``prepared`` after the head (``seq``, ``prev``): the rows to insert and the
    records they are."""
    rows: list[dict[str, Any]] = []
    records: list[StoredRecord] = []
    for item in prepared:
        seq += 1
        body, text = finish_body(item, now)
        digest = record_hash(seq, prev, text)
        rows.append(
            {
                "seq": seq,
                "event_time": now,
                "user": body["user"],
                "claimed_user": body["claimed_user"],
                "event_type": body["event_type"],
                "outcome": body["outcome"],
                "kernel_id": body["origin"]["kernel_id"],
                "notebook": body["origin"]["notebook"],
                "body": text,
                "prev_hash": prev,
                "hash": digest,
                "event_id": body["event_id"],
            }
        )
        records.append(StoredRecord.from_body(seq, text, prev, digest))
        prev = digest
    return rows, records


def _plan(
    batches: list[list[PreparedEvent]], stored: Sequence[Sequence[Any]], seq: int, prev: str, now: datetime
) -> tuple[list[dict[str, Any]], list[list[StoredRecord] | BaseException]]:
    """Number and chain the batches after the head (``seq``, ``prev``), in order: the rows to insert
    and, per batch, its records (those already stored included, ``fresh=False``) or the
    AuditInputError that refuses that batch alone. ``stored``: rows (event_id, seq, body,
    prev_hash, hash) already holding one of the batches' ids."""
    known = {
        event_id: StoredRecord.from_body(int(number), body, prev_hash, digest, fresh=False)
        for event_id, number, body, prev_hash, digest in stored
    }
    rows: list[dict[str, Any]] = []
    outcomes: list[list[StoredRecord] | BaseException] = []
    for batch in batches:
        try:
            new = _new_events(batch, known)
        except AuditInputError as error:
            outcomes.append(error)
            continue
        batch_rows, records = _link(new, seq, prev, now)
        if records:
            seq, prev = records[-1].seq, records[-1].hash
        rows += batch_rows
        ids = [item.body["event_id"] for item in batch]
        outcomes.append(_in_order(ids, records, known))
        for record in records:  # a copy later in the group is a replay of these
            known[str(record.event_id)] = replace(record, fresh=False)
    return rows, outcomes


def _new_events(prepared: list[PreparedEvent], known: dict[str, StoredRecord]) -> list[PreparedEvent]:
    """The events of a batch not stored yet. An id already used by another actor, kernel or kind of
    record is refused (AuditInputError), not taken for a retry; an id twice in the batch is stored
    once."""
    new: list[PreparedEvent] = []
    seen: set[str] = set()
    for item in prepared:
        event_id = item.body["event_id"]
        found = known.get(event_id)
        if found is not None and (
            found.user != item.body["user"]
            or found.event_type != item.body["event_type"]
            or found.origin.get("kernel_id") != item.body["origin"]["kernel_id"]
        ):
            raise AuditInputError(f"event_id {event_id} is already the id of another record")
        if found is None and event_id not in seen:
            seen.add(event_id)
            new.append(item)
    return new


def _only(outcomes: list[list[StoredRecord] | BaseException]) -> list[StoredRecord]:
    (outcome,) = outcomes
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _in_order(
    ids: list[str], records: list[StoredRecord], replays: dict[str, StoredRecord]
) -> list[StoredRecord]:
    """One record per event of the batch, in the batch's order: the new ones, then what was there."""
    by_id = {record.event_id: record for record in records}  # new records win over ``replays``
    out: list[StoredRecord] = []
    placed: set[str] = set()
    for event_id in ids:
        record = by_id.get(event_id) or replays[event_id]
        if event_id in placed:  # the same id twice in one batch: stored once
            record = replace(record, fresh=False)
        placed.add(event_id)
        out.append(record)
    return out


def _lock_head(connection: Connection) -> Any:
    """The chain head row, locked until the transaction ends (the serialisation point)."""
    return connection.execute(_LOCK_HEAD).one()


def _latest_checkpoint(connection: Connection) -> Checkpoint | None:
    row = connection.execute(
        select(audit_checkpoints)
        .order_by(audit_checkpoints.c.seq.desc(), audit_checkpoints.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return Checkpoint(int(row.seq), row.head_hash, row.signed_at, row.key_id, row.signature)


__all__ = [
    "AuditError",
    "AuditEvent",
    "AuditInputError",
    "AuditLog",
    "Checkpoint",
    "CheckpointError",
    "Problem",
    "StoredRecord",
    "VerifyReport",
    "default_checkpoint_dir",
    "default_signing_key_path",
]
