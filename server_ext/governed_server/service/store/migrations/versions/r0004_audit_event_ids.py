"""Audit event ids: made where a record is made, unique in the store.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

A kernel, a single-user server or the service gives each record an id when it creates it; the
store keeps one record per id, so a batch sent again after a lost answer (a retry, a server
restarted with its spool) is stored exactly once. Records stored before this revision have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("event_id", sa.String(64), nullable=True))
    op.create_index("ux_audit_records_event_id", "audit_records", ["event_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_audit_records_event_id", table_name="audit_records")
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("event_id")
