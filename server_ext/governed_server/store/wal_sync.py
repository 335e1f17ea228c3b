"""Group commit for the embedded SQLite store: commits made durable in the background.

With ``synchronous=FULL`` SQLite fsyncs its write-ahead log at every commit, and every cell waits
for one commit (its start record must be stored before it runs): on small virtual disks that fsync
is most of a cell's governance overhead. With ``synchronous=NORMAL`` a commit is durable against a
crash of any process at once (the data is in the operating system's cache), and this syncer fsyncs
the log at most ``interval`` seconds after a commit, so a power cut or kernel panic can lose at most
that much of the newest records, never corrupt the chain. The same trade as PostgreSQL's
``synchronous_commit = off`` with its WAL writer, or auditd's ``flush = incremental_async``.
``GovernedServerApp.sqlite_sync_interval = 0`` restores an fsync at every commit.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("governed_server")


class WalSyncer:
    """A daemon thread that fsyncs ``<database>-wal`` once per ``interval`` after commits."""

    def __init__(self, database: Path, interval: float) -> None:
        self.wal_path = Path(f"{database}-wal")
        self.interval = interval
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="governed-wal-sync", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """Call after a write transaction committed: it will be on disk within ``interval``."""
        self._dirty.set()

    def close(self) -> None:
        """Stop the thread after a last sync (at shutdown nothing committed may stay unsynced)."""
        self._stopping.set()
        self._dirty.set()
        self._thread.join(timeout=max(5.0, 2 * self.interval))
        self.sync()

    def sync(self) -> None:
        try:
            descriptor = os.open(self.wal_path, os.O_RDONLY)
        except FileNotFoundError:
            return  # checkpointed and removed: the data is in the database file, synced by SQLite
        except OSError as error:
            log.error("governed_server: cannot open %s to sync it: %s", self.wal_path, error)
            return
        try:
            os.fsync(descriptor)
        except OSError as error:
            log.error("governed_server: fsync of %s failed: %s", self.wal_path, error)
        finally:
            os.close(descriptor)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait()
            self._stopping.wait(self.interval)
            # Cleared before the sync: a commit that lands after this line sets it again.
            self._dirty.clear()
            self.sync()
