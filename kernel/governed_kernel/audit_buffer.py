"""A local buffer for audit records on their way to the service.

End-of-cell records are written here first and sent with the next cell's start record (one round
trip per cell) or after a short delay; a record the service could not take stays here, and the next
cell does not run until the buffer is empty, so a record is never silently dropped. The file
survives the kernel process being killed; ``durable=True`` also fsyncs it (power loss). Records hold
masked text only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class AuditBuffer:
    """Append-only JSONL of undelivered records, emptied once the service has them.

    The file is read once (records left by a kernel process that died with this connection file);
    after that this process knows what it wrote and does not read it back every cell.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._known: list[dict[str, Any]] | None = None
        self._directory_made = False

    def append(self, records: list[dict[str, Any]], *, durable: bool = True) -> None:
        if self._known is None:
            self._known = self._read()
        if not self._directory_made:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._directory_made = True
        fresh = not self.path.exists()
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        if fresh:
            os.chmod(self.path, 0o600)
        self._known.extend(records)

    def pending(self) -> list[dict[str, Any]]:
        """The undelivered records, oldest first (a copy: callers may add to it)."""
        if self._known is None:
            self._known = self._read()
        return list(self._known)

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

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self._known = []
