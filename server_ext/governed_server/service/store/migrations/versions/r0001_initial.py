"""Initial schema: approvals, kernel credentials, and the hash-chained audit log.

Revision ID: 0001
Revises:
Create Date: 2026-05-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

GENESIS_HASH = "0" * 64


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("requester", sa.String(255), nullable=False),
        sa.Column("kernel_id", sa.String(64), nullable=False),
        sa.Column("notebook_path", sa.Text(), server_default="", nullable=False),
        sa.Column("cell_id", sa.String(128), server_default="", nullable=False),
        sa.Column("cell_hash", sa.String(64), nullable=False),
        sa.Column("code_masked", sa.Text(), nullable=False),
        sa.Column("policy_version", sa.String(128), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("required_approvals", sa.Integer(), server_default="1", nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("decided_at", _utc(), nullable=True),
        sa.Column("valid_until", _utc(), nullable=True),
        sa.Column("single_use", sa.Boolean(), nullable=False),
        sa.Column("uses", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_approval_requests"),
    )
    op.create_index("ix_approval_requests_status", "approval_requests", ["status"])
    op.create_index(
        "ix_approval_requests_binding",
        "approval_requests",
        ["requester", "cell_hash", "policy_version", "status"],
    )
    op.create_table(
        "approval_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("approver", sa.String(255), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["approval_requests.id"],
            name="fk_approval_decisions_request_id_approval_requests",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_approval_decisions"),
        sa.UniqueConstraint("request_id", "approver", name="uq_approval_decisions_request_id_approver"),
    )
    op.create_table(
        "kernel_credentials",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("kernel_id", sa.String(64), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("server_id", sa.String(255), server_default="", nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_kernel_credentials"),
    )
    op.create_index("ix_kernel_credentials_kernel_id", "kernel_credentials", ["kernel_id"])
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_time", _utc(), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("claimed_user", sa.String(255), nullable=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("kernel_id", sa.String(64), server_default="", nullable=False),
        sa.Column("notebook", sa.Text(), server_default="", nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_records"),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("updated_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH, "updated_at": None}])
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("signed_at", _utc(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_checkpoints"),
    )
    op.create_index("ix_audit_checkpoints_seq", "audit_checkpoints", ["seq"])


def downgrade() -> None:
    for index, table in (
        ("ix_audit_checkpoints_seq", "audit_checkpoints"),
        ("ix_kernel_credentials_kernel_id", "kernel_credentials"),
        ("ix_approval_requests_binding", "approval_requests"),
        ("ix_approval_requests_status", "approval_requests"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "audit_checkpoints",
        "audit_head",
        "audit_records",
        "kernel_credentials",
        "approval_decisions",
        "approval_requests",
    ):
        op.drop_table(table)
