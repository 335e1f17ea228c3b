"""Engines, URLs, errors and migrations of the store, on real SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from store_helpers import event  # type: ignore[import-not-found]

from governed_server.audit_records import finish_body, prepare, record_hash
from governed_server.service.audit import AuditLog
from governed_server.service.store import (
    Store,
    StoreError,
    approval_decisions,
    approval_requests,
    create_store_engine,
    kernel_credentials,
    metadata,
    migrate,
    normalise_url,
    open_store,
)

NOW = datetime(2026, 11, 29, 1, 2, 3, 456789, tzinfo=timezone.utc)


def request_row(request_id: str, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "id": request_id,
        "created_at": NOW,
        "requester": "alice",
        "kernel_id": "k-1",
        "cell_hash": "a" * 64,
        "code_masked": "df = load()",
        "policy_version": "pci-1",
        "rules": [{"id": "pan-table", "why": "reads cards"}],
        "status": "pending",
        "expires_at": NOW + timedelta(minutes=30),
        "single_use": True,
    }
    values.update(overrides)
    return values


# -- URLs and errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u:p@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.sqlite", "sqlite+pysqlite"),
    ],
)
def test_urls_are_normalised(given: str, driver: str) -> None:
    assert normalise_url(given).drivername == driver


@pytest.mark.parametrize("url", ["mysql://u:s3cret@h/db", "postgresql+psycopg2://u:s3cret@h/db", "not a url"])
def test_unsupported_urls_are_refused_without_the_password(url: str) -> None:
    with pytest.raises(StoreError) as raised:
        open_store(url)
    assert "s3cret" not in str(raised.value)


def test_unreachable_postgresql_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(StoreError) as raised:
        open_store("postgresql://auditor:s3cret@127.0.0.1:1/governance")
    message = str(raised.value)
    assert "s3cret" not in message and "auditor:***@127.0.0.1:1" in message
    assert "cannot open the store" in message


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(StoreError, match="in-memory"):
        open_store("sqlite://")


def test_sqlite_directory_is_created_and_configured(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "governance.sqlite"
    store = open_store(f"sqlite:///{path}")
    try:
        assert path.is_file() and store.sqlite_path == path
        with store.read() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
        assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000, "synchronous": 2}
    finally:
        store.close()


def test_sqlite_write_transactions_take_the_lock_at_begin(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.sqlite'}"
    first = open_store(url)
    other = create_store_engine(url, busy_timeout_ms=100)
    try:
        with first.begin():
            # BEGIN IMMEDIATE: a second writer cannot even start, so two appends never read the same head.
            with pytest.raises(Exception, match="locked"), other.begin() as connection:
                connection.execute(text("SELECT 1"))
            with first.read():
                pass  # readers are not blocked (WAL, deferred BEGIN)
    finally:
        other.dispose()
        first.close()


# -- schema ----------------------------------------------------------------------------------------


def test_migrations_match_the_schema(store: Store) -> None:
    assert store.schema_revision() == migrate.head_revision()
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diff == []


def test_approval_tables_round_trip_aware_utc_and_constraints(store: Store) -> None:
    with store.begin() as connection:
        connection.execute(insert(approval_requests).values(**request_row("r-1")))
        connection.execute(
            insert(approval_decisions).values(
                request_id="r-1", approver="bob", decision="approve", reason="ok", decided_at=NOW
            )
        )
        connection.execute(
            insert(kernel_credentials).values(
                token_hash="f" * 64, kernel_id="k-1", username="alice", created_at=NOW
            )
        )
    with store.read() as connection:
        request = connection.execute(select(approval_requests)).one()
        credential = connection.execute(select(kernel_credentials)).one()
    assert request.created_at == NOW and request.created_at.tzinfo is not None
    assert request.rules == [{"id": "pan-table", "why": "reads cards"}]
    assert (request.notebook_path, request.cell_id, request.required_approvals, request.uses) == (
        "",
        "",
        1,
        0,
    )
    assert request.decided_at is None and credential.server_id == "" and credential.revoked_at is None
    with pytest.raises(IntegrityError), store.begin() as connection:
        connection.execute(
            insert(approval_decisions).values(
                request_id="r-1", approver="bob", decision="deny", reason="twice", decided_at=NOW
            )
        )
    with pytest.raises(IntegrityError), store.begin() as connection:
        connection.execute(
            insert(approval_decisions).values(
                request_id="missing", approver="carol", decision="deny", reason="no such", decided_at=NOW
            )
        )


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(Exception, match="naive"), store.begin() as connection:
        connection.execute(
            insert(approval_requests).values(**request_row("r-2", created_at=datetime(2026, 1, 1)))
        )


def test_older_schema_is_upgraded_on_open_and_keeps_data(db_url: str, tmp_path: Path) -> None:
    engine = create_store_engine(db_url)
    migrate.upgrade(engine, "0001")
    old = Store(engine)
    assert old.schema_revision() == "0001"
    request_id = str(uuid.uuid4())
    with old.begin() as connection:
        connection.execute(insert(approval_requests).values(**request_row(request_id)))
    append_as_before_event_ids(old, 5)
    old_log = AuditLog(old, signing_key_path=tmp_path / "k.pem", checkpoint_dir=tmp_path / "cp")
    old_log.checkpoint()
    old.close()

    upgraded = open_store(db_url)
    try:
        assert upgraded.schema_revision() == migrate.head_revision() != "0001"
        with upgraded.read() as connection:
            assert connection.execute(select(approval_requests.c.id)).scalars().all() == [request_id]
        audit = AuditLog(upgraded, signing_key_path=tmp_path / "k.pem", checkpoint_dir=tmp_path / "cp")
        assert [r.seq for r in audit.query()] == [1, 2, 3, 4, 5]
        audit.append([event(6)])
        report = audit.verify()
        assert report.ok and report.total == 6 and report.last_checkpoint is not None
        with upgraded.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    finally:
        upgraded.close()


def append_as_before_event_ids(store: Store, count: int) -> None:
    """Records as the releases before schema revision 0004 wrote them: no event id, in the body or
    in a column (the column does not exist yet)."""
    now = datetime.now(timezone.utc)
    prev = "0" * 64
    with store.begin() as connection:
        for seq in range(1, count + 1):
            prepared = prepare(event(seq), output_cap=1024)
            del prepared.body["event_id"]
            body, body_text = finish_body(prepared, now)
            digest = record_hash(seq, prev, body_text)
            connection.execute(
                text(
                    'INSERT INTO audit_records (seq, event_time, "user", claimed_user, event_type, '
                    "outcome, kernel_id, notebook, body, prev_hash, hash) VALUES (:seq, :time, :user, "
                    ":claimed, :type, :outcome, :kernel, :notebook, :body, :prev, :hash)"
                ),
                {
                    "seq": seq, "time": now, "user": body["user"], "claimed": body["claimed_user"],
                    "type": body["event_type"], "outcome": body["outcome"],
                    "kernel": body["origin"]["kernel_id"], "notebook": body["origin"]["notebook"],
                    "body": body_text, "prev": prev, "hash": digest,
                },
            )  # fmt: skip
            prev = digest
        connection.execute(
            text("UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1"), {"seq": count, "hash": prev}
        )


def test_opening_twice_is_harmless(db_url: str) -> None:
    open_store(db_url).close()
    second = open_store(db_url)
    try:
        assert second.schema_revision() == migrate.head_revision()
    finally:
        second.close()
