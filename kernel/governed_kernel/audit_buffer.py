"""A local buffer for audit records on their way to the service.

End-of-cell records are written here first and sent once the cell's reply is out; a record the
service could not take stays here and goes with the next cell's start record, and that cell does not
run until the buffer is empty, so a record is never silently dropped. The file
survives the kernel process being killed; ``durable=True`` also fsyncs it (power loss). Records hold
masked text only.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO, Any


class AuditBuffer:
    """Append-only JSONL of undelivered records, emptied once the service has them.

    The file is read once (records left by a kernel process that died with this connection file);
    after that this process knows what it wrote and does not read it back every cell. It stays open
    and is emptied in place (a cell costs one write, not an open, a close and an unlink); :meth:`close`
    removes it when nothing is left in it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._known: list[dict[str, Any]] | None = None
        self._handle: IO[str] | None = None
        self._oldest_at = 0.0
        """When the oldest waiting record was buffered (``time.monotonic``); 0 for records left by an
        earlier process (they are as old as can be)."""

    def append(self, records: list[dict[str, Any]], *, durable: bool = True) -> None:
        if self._known is None:
            self._known = self._read()
        if not self._known:
            self._oldest_at = time.monotonic()
        handle = self._file()
        handle.write("".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records))
        handle.flush()
        if durable:
            os.fsync(handle.fileno())
        self._known.extend(records)

    @property
    def count(self) -> int:
        """How many records wait."""
        if self._known is None:
            self._known = self._read()
        return len(self._known)

    def age(self) -> float:
        """Seconds the oldest waiting record has waited (0 when none waits)."""
        return time.monotonic() - self._oldest_at if self.count else 0.0

    def pending(self) -> list[dict[str, Any]]:
        """The undelivered records, oldest first (a copy: callers may add to it)."""
        if self._known is None:
            self._known = self._read()
        return list(self._known)

    def clear(self) -> None:
        """Forget every record: the service has them."""
        if self._handle is not None:
            os.ftruncate(self._handle.fileno(), 0)  # O_APPEND: the next write starts at 0 again
        else:
            self.path.unlink(missing_ok=True)
        self._known = []

    def forget_first(self, count: int) -> None:
        """Forget the ``count`` oldest records (delivered); the rest stay, on disk too (and count as
        old as the oldest was: a batch that keeps failing becomes overdue)."""
        known = self.pending()
        if count >= len(known):
            self.clear()
            return
        oldest_at = self._oldest_at
        self.clear()
        self.append(known[count:], durable=False)
        self._oldest_at = oldest_at

    def close(self) -> None:
        """Close the file; remove it when it holds nothing (else the next kernel sends its records)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._known == []:
            self.path.unlink(missing_ok=True)

    def _file(self) -> IO[str]:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.fchmod(descriptor, 0o600)  # an existing file keeps no wider mode
            self._handle = os.fdopen(descriptor, "a", encoding="utf-8")
        return self._handle

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="utf-8", errors="replace")
        if text and not text.endswith("\n"):
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write("\n")  # records appended from now on start on a line of their own
        records = []
        for line in text.splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    # A torn last line (crash mid-write) is kept as evidence in the record stream.
                    records.append({"event_type": "kernel.buffer_corrupt", "outcome": "failure",
                                    "details": {"line_length": len(line)}})  # fmt: skip
        return records
