"""Group commit of the embedded SQLite store: what is synchronous, and that the log reaches the disk.

A power cut cannot be simulated here; what can be checked is the contract: with an interval the
connection runs ``synchronous=NORMAL`` and every commit is followed, within the interval, by an
fsync of the write-ahead log (and one more when the store closes); without one, SQLite's own
``synchronous=FULL`` fsyncs at each commit and no background thread runs.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from store_helpers import event  # type: ignore[import-not-found]

from governed_server.service.audit import AuditLog
from governed_server.service.store import Store


def synchronous_level(store: Store) -> int:
    with store.engine.connect() as connection:
        return int(connection.exec_driver_sql("PRAGMA synchronous").scalar_one())


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths the syncer fsynced (the real fsync still runs)."""
    seen: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)  # the syncer calls os.fsync
    return seen


def test_without_an_interval_every_commit_is_synced_by_sqlite(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'g.sqlite'}")
    try:
        assert synchronous_level(store) == 2  # FULL
        assert store.syncer is None
        assert not [t for t in threading.enumerate() if t.name == "governed-wal-sync"]
    finally:
        store.close()


def test_with_an_interval_commits_reach_the_disk_within_it(tmp_path: Path, fsyncs: list[str]) -> None:
    database = tmp_path / "g.sqlite"
    store = Store.open(f"sqlite:///{database}", sqlite_sync_interval=0.05)
    try:
        assert synchronous_level(store) == 1  # NORMAL: the syncer makes commits durable
        assert store.syncer is not None
        audit = AuditLog(store, signing_key_path=None, checkpoint_dir=None)
        time.sleep(0.2)
        fsyncs.clear()
        audit.append([event(1)])
        deadline = time.monotonic() + 5
        while not fsyncs and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fsyncs == [f"{database}-wal"]
        time.sleep(0.2)
        assert fsyncs == [f"{database}-wal"], "no commit, no fsync"
        audit.append([event(1)])
    finally:
        store.close()
    assert fsyncs[-1] == f"{database}-wal", "closing syncs what was committed last"
    assert not [t for t in threading.enumerate() if t.name == "governed-wal-sync"]


def test_postgresql_keeps_its_own_durability(db_url: str) -> None:
    store = Store.open(db_url, sqlite_sync_interval=0.05)
    try:
        assert (store.syncer is None) == (store.dialect == "postgresql")
    finally:
        store.close()


def test_the_server_setting_reaches_the_store(tmp_path: Path) -> None:
    from governed_server.app import GovernedServerApp

    trait: Any = GovernedServerApp.class_traits()["sqlite_sync_interval"]
    assert trait.default_value == pytest.approx(0.1)
    assert trait.min == 0.0


def wal_autocheckpoint(store: Store) -> int:
    with store.engine.connect() as connection:
        return int(connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def test_without_an_interval_sqlite_checkpoints_by_itself(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'g.sqlite'}")
    try:
        assert wal_autocheckpoint(store) == 1000  # SQLite's default: inside the commit that crosses it
    finally:
        store.close()


@pytest.mark.parametrize("syncer_checkpoints", [True, False])
def test_with_an_interval_the_syncer_checkpoints_off_the_committing_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncer_checkpoints: bool
) -> None:
    """Commits never checkpoint (no commit waits for the copy and its fsyncs); the syncer does, once
    the log is big enough. Without the syncer's checkpoint the database file would not change at
    all until the store closes: the control case shows the test can tell."""
    from governed_server.service.store import wal_sync

    monkeypatch.setattr(wal_sync, "CHECKPOINT_BYTES", 64 * 1024)
    monkeypatch.setattr(wal_sync, "CHECKPOINT_GAP_S", 0.0)
    if not syncer_checkpoints:
        monkeypatch.setattr(wal_sync.WalSyncer, "checkpoint_if_big", lambda self: None)
    database = tmp_path / "g.sqlite"
    store = Store.open(f"sqlite:///{database}", sqlite_sync_interval=0.02)
    try:
        assert wal_autocheckpoint(store) == 0
        time.sleep(0.1)  # the migrations' commits: synced (and checkpointed) first
        size_before = database.stat().st_size
        audit = AuditLog(store, signing_key_path=None, checkpoint_dir=None)
        for n in range(0, 300, 3):
            audit.append([event(n), event(n + 1), event(n + 2)])
        assert Path(f"{database}-wal").stat().st_size > 64 * 1024
        deadline = time.monotonic() + 5
        while database.stat().st_size == size_before and time.monotonic() < deadline:
            time.sleep(0.02)
        grew = database.stat().st_size > size_before
        assert grew is syncer_checkpoints
        assert audit.verify().ok
    finally:
        store.close()
