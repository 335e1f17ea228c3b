"""``Store``: one engine, its schema brought up to date, and transactions shaped for the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from governed_server.service.store import migrate
from governed_server.service.store.engine import (
    READ_ONLY_OPTION,
    StoreError,
    create_store_engine,
    describe_error,
    normalise_url,
    redact,
    sqlite_path,
)
from governed_server.service.store.wal_sync import WalSyncer


class Store:
    """The governance database: approvals, kernel credentials and the audit log.

    Use :meth:`open` (or :func:`open_store`) rather than the constructor: it checks the database is
    reachable and migrates it to the newest schema.
    """

    def __init__(self, engine: Engine, syncer: WalSyncer | None = None) -> None:
        self.engine = engine
        self.syncer = syncer

    @classmethod
    def open(cls, url: str | URL, *, upgrade: bool = True, sqlite_sync_interval: float = 0.0) -> Store:
        """Connect to ``url``, migrate to the newest schema, and return the store.

        ``sqlite_sync_interval`` > 0 (SQLite only): commits return before their fsync, which a
        background thread does at most that many seconds later (group commit, see
        :mod:`governed_server.service.store.wal_sync`); 0 fsyncs at every commit.
        Raises :class:`StoreError` (never showing the password) for a bad URL, an unreachable
        database or a failed migration.
        """
        parsed = normalise_url(url)
        database = sqlite_path(parsed)
        grouped = sqlite_sync_interval > 0 and database is not None
        engine = create_store_engine(parsed, sqlite_full_sync=not grouped)
        try:
            if upgrade:
                migrate.upgrade(engine)
            else:
                with engine.connect():
                    pass
        except (SQLAlchemyError, OSError) as error:
            engine.dispose()
            raise StoreError(
                f"cannot open the store at {redact(parsed)}: {describe_error(error, parsed)}"
            ) from None
        syncer = WalSyncer(database, sqlite_sync_interval) if grouped and database is not None else None
        return cls(engine, syncer)

    @property
    def url(self) -> str:
        """The URL with the password hidden."""
        return redact(self.engine.url)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None on PostgreSQL."""
        return sqlite_path(self.engine.url)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction (SQLite: ``BEGIN IMMEDIATE``); commits on exit, rolls back on error."""
        with self.engine.begin() as connection:
            yield connection
        if self.syncer is not None:
            self.syncer.committed()

    @contextmanager
    def sqlite_write(self) -> Iterator[Any]:
        """A write transaction (``BEGIN IMMEDIATE``) on SQLite's own cursor; commits on exit.

        For the one hot path where SQLAlchemy's per-statement bookkeeping costs more than the
        statements themselves (the audit append, once per cell). Raises the driver's
        ``sqlite3.Error``; on any error the pool rolls the connection back when it is returned.
        """
        if self.dialect != "sqlite":
            raise StoreError("sqlite_write is for SQLite stores only")
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            yield cursor
            cursor.execute("COMMIT")
        finally:
            raw.close()
        if self.syncer is not None:
            self.syncer.committed()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction that does not take SQLite's write lock."""
        with self.engine.connect() as connection:
            connection.execution_options(**{READ_ONLY_OPTION: True})
            with connection.begin():
                yield connection

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at."""
        with self.engine.connect() as connection:
            return migrate.current_revision(connection)

    def close(self) -> None:
        """Close pooled connections (call at shutdown and in forked children); sync what is pending."""
        if self.syncer is not None:
            self.syncer.close()
            self.syncer = None
        self.engine.dispose()


def open_store(url: str | URL, *, upgrade: bool = True) -> Store:
    """Shortcut for :meth:`Store.open`."""
    return Store.open(url, upgrade=upgrade)
