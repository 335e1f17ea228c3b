"""Client mode: the records a single-user server made and the service has not yet stored, on disk.

What the server's guards did (a kernel message masked, a file served masked, a save refused) is
recorded after the fact, so it cannot wait for the service the way a request does (a request is
recorded before it is forwarded, or not forwarded at all). Such a record goes to this spool first
(fsynced, 0600 in a 0700 directory of the user's), then to the service at the next flush; what the
service has not confirmed stays, across a restart of the server too, and is sent again. Each record
has its event id from the start, so a record sent twice (its answer lost) is stored once.

The file is the analyst's own (the server runs as the analyst): it protects against loss, not
against the analyst, like every record of the single-user server (docs/deploy-jupyterhub.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from governed_kernel.audit_buffer import AuditBuffer
from governed_server.file_modes import private_dir

KERNEL_KEY = "_kernel_id"
"""Which kernel a spooled record is about ("" for the server's file routes); not sent."""
MAX_BATCH = 100


class ReportSpool:
    """Records waiting for the service, oldest first; thread-safe (guards run in worker threads)."""

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        self.buffer = AuditBuffer(path)
        self.lock = threading.Lock()

    def add(self, kernel_id: str, record: dict[str, Any]) -> None:
        with self.lock:
            self.buffer.append([{**record, KERNEL_KEY: kernel_id}], durable=True)

    @property
    def count(self) -> int:
        with self.lock:
            return self.buffer.count

    def flush(self, send: Callable[[str, list[dict[str, Any]]], None]) -> int:
        """Send waiting records, a run of one kernel's records at a time, in order, with ``send``
        (kernel id, records); a run ``send`` returns from is done with (stored, or refused for good
        and logged by ``send``); at the first failure it raises and the rest waits. How many were
        sent."""
        sent = 0
        while True:
            with self.lock:
                waiting = self.buffer.pending()[:MAX_BATCH]
            if not waiting:
                return sent
            kernel_id = waiting[0].get(KERNEL_KEY, "")
            run: list[dict[str, Any]] = []
            for record in waiting:
                if record.get(KERNEL_KEY, "") != kernel_id:
                    break
                run.append({key: value for key, value in record.items() if key != KERNEL_KEY})
            send(str(kernel_id), run)
            with self.lock:
                self.buffer.forget_first(len(run))
            sent += len(run)

    def close(self) -> None:
        with self.lock:
            self.buffer.close()
