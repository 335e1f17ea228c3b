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
    """Append-only JSONL of undelivered records, emptied once the service has them."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, records: list[dict[str, Any]], *, durable: bool = True) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        if fresh:
            os.chmod(self.path, 0o600)

    def pending(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
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
