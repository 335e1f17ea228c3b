"""A local buffer for audit records on their way to the service.

End-of-cell records are written here first and sent right after their cell
(:mod:`governed_kernel.record_delivery`); a record the service could not take stays here and goes
again, so a record is never silently dropped. The file survives the kernel process being killed
(the kernel restarted with the same connection file sends what is left); ``durable=True`` also
fsyncs it (power loss). Records hold masked text only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import IO, Any

DELIVERED_KEY = "_delivered"
"""A line ``{"_delivered": n}`` says the file's first n records reached the service."""
COMPACT_AT_BYTES = 1024 * 1024
"""Once everything in the file is delivered and it is this big, it is emptied."""


def new_event_id() -> str:
    """A record's id, made where the record is made: the store keeps one record per id, so a record
    sent again (its answer lost, or left in this buffer by a killed process) is stored once. 128
    random bits, URL-safe base64: no run of digits long enough to pass for a card number."""
    return secrets.token_urlsafe(16)


def event_id_of(text: str) -> str:
    """The id of a record made from ``text`` (the same text, the same id, in any process)."""
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()[:16]).decode().rstrip("=")


class AuditBuffer:
    """Append-only JSONL of records, each line a record or a mark of how many were delivered.

    The file is read once (records left by a kernel process that died with this connection file);
    after that this process knows what it wrote and does not read it back every cell. It stays open;
    a delivery appends a mark instead of rewriting the file (a cell costs two small appends, not a
    truncation, which the file system journals: measured ~0.1 ms a cell), and the file is emptied
    when it has grown to :data:`COMPACT_AT_BYTES` with nothing waiting. :meth:`close` removes it when
    nothing waits.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._known: list[dict[str, Any]] | None = None
        """The records not yet delivered, oldest first."""
        self._lines = 0
        """Records written to the file so far (delivery marks count against this)."""
        self._handle: IO[str] | None = None
        self._oldest_at = 0.0
        """When the oldest waiting record was buffered (``time.monotonic``); 0 for records left by an
        earlier process (they are as old as can be)."""

    def append(self, records: list[dict[str, Any]], *, durable: bool = True) -> None:
        known = self._waiting()
        if not known:
            self._oldest_at = time.monotonic()
        self._write("".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records), durable)
        self._lines += len(records)
        known.extend(records)

    @property
    def count(self) -> int:
        """How many records wait."""
        return len(self._waiting())

    def age(self) -> float:
        """Seconds the oldest waiting record has waited (0 when none waits)."""
        return time.monotonic() - self._oldest_at if self.count else 0.0

    def pending(self) -> list[dict[str, Any]]:
        """The undelivered records, oldest first (a copy: callers may add to it)."""
        return list(self._waiting())

    def forget_first(self, count: int) -> None:
        """Forget the ``count`` oldest records (delivered); the rest stay (and count as old as the
        oldest was: a batch that keeps failing becomes overdue)."""
        known = self._waiting()
        count = min(count, len(known))
        if count == 0:
            return
        del known[:count]
        if known:
            self._write(json.dumps({DELIVERED_KEY: self._lines - len(known)}) + "\n", False)
        elif self._handle is not None and self._handle.tell() < COMPACT_AT_BYTES:
            self._write(json.dumps({DELIVERED_KEY: self._lines}) + "\n", False)
        else:
            self._empty_file()

    def close(self) -> None:
        """Close the file; remove it when nothing waits (else the next kernel sends its records)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._known == []:
            self.path.unlink(missing_ok=True)

    def _waiting(self) -> list[dict[str, Any]]:
        if self._known is None:
            self._known = self._read()
        return self._known

    def _write(self, text: str, durable: bool) -> None:
        handle = self._file()
        handle.write(text)
        handle.flush()
        if durable:
            os.fsync(handle.fileno())

    def _empty_file(self) -> None:
        if self._handle is not None:
            os.ftruncate(self._handle.fileno(), 0)  # O_APPEND: the next write starts at 0 again
        else:
            self.path.unlink(missing_ok=True)
        self._lines = 0

    def _file(self) -> IO[str]:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.fchmod(descriptor, 0o600)  # an existing file keeps no wider mode
            self._handle = os.fdopen(descriptor, "a", encoding="utf-8")
        return self._handle

    def _read(self) -> list[dict[str, Any]]:
        """The records a dead process left: every record line after the last delivery mark's count."""
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="utf-8", errors="replace")
        if text and not text.endswith("\n"):
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write("\n")  # lines appended from now on start on a line of their own
        records: list[dict[str, Any]] = []
        delivered = 0
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                # A torn last line (crash mid-write) is kept as evidence in the record stream.
                value = {"event_type": "kernel.buffer_corrupt", "outcome": "failure",
                         "event_id": event_id_of(f"{self.path}:{len(records)}:{line}"),
                         "details": {"line_length": len(line)}}  # fmt: skip
            if _is_mark(value):
                delivered = max(delivered, value[DELIVERED_KEY])
            else:
                records.append(value)
        self._lines = len(records)
        return records[delivered:]


def _is_mark(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {DELIVERED_KEY} and isinstance(value[DELIVERED_KEY], int)
