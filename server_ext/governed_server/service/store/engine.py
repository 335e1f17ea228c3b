"""Engines for the two supported backends, configured for one writer at a time and no lost commits.

SQLite (the embedded default): WAL so readers never block the writer, a busy timeout so concurrent
processes wait instead of failing, ``synchronous=FULL`` so a committed audit record survives a power
cut (or ``NORMAL`` with a background fsync, see :mod:`governed_server.service.store.wal_sync`), foreign keys
on, and every write transaction opened with ``BEGIN IMMEDIATE`` so two processes cannot both read the
chain head and then race to write (the classic SQLite deadlock/fork).

PostgreSQL (shared by many servers): psycopg 3 only; ``postgresql://`` and ``postgres://`` URLs are
rewritten to ``postgresql+psycopg://`` so operators can paste the URL their DBA gave them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from governed_server.file_modes import create_private_file

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for the lock before failing (concurrent kernels, CLI, servers)."""

READ_ONLY_OPTION = "governed_read_only"
"""Execution option: open the transaction with a deferred ``BEGIN`` (SQLite) so readers do not lock."""

_PG_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg"}


class StoreError(RuntimeError):
    """The store cannot be used (bad URL, unreachable database, failed migration).

    Messages never contain the database password.
    """


def redact(url: URL | str) -> str:
    """``url`` as text with its password hidden, for messages and logs."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


def normalise_url(url: str | URL) -> URL:
    """Parse and validate a store URL; PostgreSQL URLs are pinned to the psycopg 3 driver."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError as error:
        raise StoreError(
            f"invalid database URL {redact(url)!r}: expected e.g. sqlite:///path/x.sqlite "
            "or postgresql://user@host/db"
        ) from error
    backend = parsed.drivername
    if backend in _PG_DRIVERS:
        return parsed.set(drivername="postgresql+psycopg")
    if backend.startswith("postgresql+"):
        raise StoreError(
            f"unsupported PostgreSQL driver {backend!r} in {redact(parsed)}: use postgresql:// "
            "(psycopg 3 is the only supported driver)"
        )
    if backend in ("sqlite", "sqlite+pysqlite"):
        return parsed.set(drivername="sqlite+pysqlite")
    raise StoreError(f"unsupported database {backend!r} in {redact(parsed)}: use sqlite or postgresql")


def sqlite_path(url: URL) -> Path | None:
    """The database file of an SQLite URL; None for PostgreSQL or an in-memory SQLite database."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database)).expanduser()


def create_store_engine(
    url: str | URL, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS, sqlite_full_sync: bool = True
) -> Engine:
    """An engine for ``url``; the SQLite file (0600) and its directory (0700) are created when missing.

    ``sqlite_full_sync=False`` opens SQLite with ``synchronous=NORMAL`` and no automatic WAL
    checkpoints: only for a caller that syncs and checkpoints the log itself
    (:class:`~governed_server.service.store.wal_sync.WalSyncer`).
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, busy_timeout_ms, "FULL" if sqlite_full_sync else "NORMAL")
    # One connection per store thread (governed_server.offload) and a few for the CLI's own threads.
    return create_engine(parsed, pool_pre_ping=True, pool_size=32, max_overflow=4)


def _sqlite_engine(url: URL, busy_timeout_ms: int, synchronous: str) -> Engine:
    path = sqlite_path(url)
    if path is None:
        raise StoreError("an in-memory SQLite store would lose the audit log at exit: give a file path")
    try:
        create_private_file(path)  # 0600 in a 0700 folder; SQLite gives -wal and -shm the same mode
    except OSError as error:
        raise StoreError(f"cannot create the store {path}: {error.strerror}") from error
    engine = create_engine(
        url.set(database=str(path)),
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so "begin" below decides how to BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            if synchronous == "NORMAL":  # the WalSyncer checkpoints, off the committing thread
                cursor.execute("PRAGMA wal_autocheckpoint = 0")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def describe_error(error: BaseException, url: URL) -> str:
    """A one-line cause for ``error`` (the driver's first line) with any password scrubbed."""
    origin = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    message = str(origin).strip().splitlines()[0] if str(origin).strip() else type(origin).__name__
    if url.password:
        message = message.replace(str(url.password), "***")
    return message
