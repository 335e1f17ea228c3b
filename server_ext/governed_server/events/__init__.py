"""jupyter_events schemas of the governance service, and helpers to register and emit them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent
APPROVAL_SCHEMA = "https://events.governed-kernel.org/governance/approval/v1"
CELL_SCHEMA = "https://events.governed-kernel.org/governance/cell/v1"
INTEGRITY_SCHEMA = "https://events.governed-kernel.org/governance/integrity/v1"
SCHEMA_FILES = ("approval.yaml", "cell.yaml", "integrity.yaml")


def register_schemas(event_logger: Any) -> None:
    """Register every schema with a ``jupyter_events.EventLogger`` (idempotent)."""
    registered = set(getattr(event_logger.schemas, "schema_ids", []))
    for name in SCHEMA_FILES:
        path = SCHEMA_DIR / name
        if _schema_id(path) not in registered:
            event_logger.register_event_schema(path)


def _schema_id(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith('"$id":'):
            return line.split(":", 1)[1].strip()
    return ""
