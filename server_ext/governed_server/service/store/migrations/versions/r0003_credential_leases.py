"""Kernel credentials of a team deployment: a kind (the kernel's own, or its server's) and a lease.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

Under JupyterHub a single-user server registers each kernel with the shared service and receives two
credentials: one for the kernel, one it keeps for itself (the server's records of what it forwards).
Both end when their lease does, unless the server renews it (docs/deploy-jupyterhub.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from governed_server.service.store.schema import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("kernel_credentials") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="kernel"))
        batch.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kernel_credentials") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("kind")
