"""Indexes for the audit query filters (time range, user, kernel, event type).

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-01

Added after the first release so that auditors' range queries do not scan the whole log; also the
revision the upgrade test starts from an older schema with data.
"""

from __future__ import annotations

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_INDEXES = (
    ("ix_audit_records_event_time", "event_time"),
    ("ix_audit_records_user", "user"),
    ("ix_audit_records_kernel_id", "kernel_id"),
    ("ix_audit_records_event_type", "event_type"),
)


def upgrade() -> None:
    for name, column in _INDEXES:
        op.create_index(name, "audit_records", [column])


def downgrade() -> None:
    for name, _column in _INDEXES:
        op.drop_index(name, table_name="audit_records")
