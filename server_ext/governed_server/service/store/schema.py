"""The store's schema (SQLAlchemy Core), the single source the migrations must match.

A test compares this metadata with the database produced by the migrations, so a column added here
without a migration (or the reverse) fails CI.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names so migrations can refer to them on both backends."""

metadata = MetaData(naming_convention=NAMING_CONVENTION)

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of record 1: the chain starts from a fixed, well-known value."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both backends.

    SQLite has no time zones and hands back naive values: those are stored as UTC and re-tagged on
    the way out. Naive input is refused, so local time can never sneak into the audit trail.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store: use an aware UTC datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# -- approvals (state machine in governed_server.service.approvals) ------------------------------------------

approval_requests = Table(
    "approval_requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("requester", String(255), nullable=False),
    Column("kernel_id", String(64), nullable=False),
    Column("notebook_path", Text, nullable=False, server_default=""),
    Column("cell_id", String(128), nullable=False, server_default=""),
    Column("cell_hash", String(64), nullable=False),
    Column("code_masked", Text, nullable=False),
    Column("policy_version", String(128), nullable=False),
    Column("rules", JSON, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("required_approvals", Integer, nullable=False, server_default="1"),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("decided_at", UTCDateTime(), nullable=True),
    Column("valid_until", UTCDateTime(), nullable=True),
    Column("single_use", Boolean, nullable=False),
    Column("uses", Integer, nullable=False, server_default="0"),
    Index("ix_approval_requests_binding", "requester", "cell_hash", "policy_version", "status"),
)

approval_decisions = Table(
    "approval_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(36), ForeignKey("approval_requests.id"), nullable=False),
    Column("approver", String(255), nullable=False),
    Column("decision", String(8), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided_at", UTCDateTime(), nullable=False),
    UniqueConstraint("request_id", "approver"),
)

kernel_credentials = Table(
    "kernel_credentials",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("kernel_id", String(64), nullable=False, index=True),
    Column("username", String(255), nullable=False),
    Column("server_id", String(255), nullable=False, server_default=""),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("kind", String(16), nullable=False, server_default="kernel"),
    Column("expires_at", UTCDateTime(), nullable=True),
)

# -- audit log (governed_server.service.audit) ---------------------------------------------------------------

audit_records = Table(
    "audit_records",
    metadata,
    # Assigned from audit_head under its lock, never by an autoincrement: one total order.
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_time", UTCDateTime(), nullable=False),
    # Copies of body fields for filtering; verify checks they equal the hashed body.
    Column("user", String(255), nullable=False),
    Column("claimed_user", String(255), nullable=True),
    Column("event_type", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("kernel_id", String(64), nullable=False, server_default=""),
    Column("notebook", Text, nullable=False, server_default=""),
    # The canonical JSON text that was hashed, byte for byte.
    Column("body", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # Made where the record was made; one record per id (a retried batch is stored once).
    Column("event_id", String(64), nullable=True),
    Index("ix_audit_records_event_time", "event_time"),
    Index("ux_audit_records_event_id", "event_id", unique=True),
    Index("ix_audit_records_user", "user"),
    Index("ix_audit_records_kernel_id", "kernel_id"),
    Index("ix_audit_records_event_type", "event_type"),
)

audit_head = Table(
    "audit_head",
    metadata,
    # A single row (id=1), locked by every append: the serialisation point of the chain.
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=True),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", BigInteger, nullable=False, index=True),
    Column("head_hash", String(64), nullable=False),
    Column("signed_at", UTCDateTime(), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
)
