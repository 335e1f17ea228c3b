"""JSON Schemas of request bodies: validation (400 naming the field) and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from governed_server.audit_records import EVENT_ID_PATTERN

HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
SHORT = {"type": "string", "maxLength": 1024}

POSITION = {"type": "integer", "minimum": 0, "maximum": 10_000_000}
"""A line or column in a cell: small enough that it can never be read as a card number."""

SPAN = {
    "type": "object",
    "additionalProperties": False,
    "properties": {name: POSITION for name in ("line", "column", "end_line", "end_column")},
}

RULE = {
    "type": "object",
    "required": ["id", "action"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 200},
        "action": {"enum": ["allow", "approve", "deny"]},
        "reason": {"type": "string", "maxLength": 2000},
        "pci": {"type": "array", "items": {"type": "string", "maxLength": 50}, "maxItems": 20},
        "span": SPAN,
    },
}

APPROVAL_CREATE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["cell_hash", "code", "policy_version", "rules"],
    "properties": {
        "cell_hash": HEX64,
        "code": {"type": "string", "maxLength": 200_000},
        "policy_version": {"type": "string", "minLength": 1, "maxLength": 128},
        "rules": {"type": "array", "items": RULE, "minItems": 1, "maxItems": 100},
        "notebook_path": SHORT,
        "cell_id": {"type": "string", "maxLength": 128},
    },
}

DECISION: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["decision", "reason"],
    "properties": {
        "decision": {"enum": ["approve", "deny"]},
        "reason": {"type": "string", "minLength": 1, "maxLength": 2000},
    },
}

EMPTY: dict[str, Any] = {"type": ["object", "null"], "additionalProperties": False, "properties": {}}

KERNEL_EVENT_TYPES = "^(cell|kernel|runtime|output|policy)\\.[a-z0-9_.-]{1,56}$"
"""Kernels report only about their own cells and runtime; approval and audit events come from the server."""

AUDIT_RECORD = {
    "type": "object",
    "additionalProperties": False,
    "required": ["event_type"],
    "properties": {
        "event_type": {"type": "string", "pattern": KERNEL_EVENT_TYPES},
        "event_id": {"type": "string", "pattern": EVENT_ID_PATTERN},
        "outcome": {"enum": ["success", "failure"]},
        "claimed_user": {"type": ["string", "null"], "maxLength": 255},
        "session_id": {"type": "string", "maxLength": 128},
        "notebook": SHORT,
        "cell_id": {"type": "string", "maxLength": 128},
        "cell_hash": {"anyOf": [HEX64, {"const": ""}]},
        "tables": {"type": "array", "items": {"type": "string", "maxLength": 255}, "maxItems": 100},
        "code": {"type": "string", "maxLength": 200_000},
        "output": {"type": "string", "maxLength": 4_000_000},
        "output_sha256": {"anyOf": [HEX64, {"type": "null"}]},
        "output_size": {"type": ["integer", "null"], "minimum": 0},
        "masking": {"type": "object"},
        "approval_id": {"type": ["string", "null"], "maxLength": 36},
        "policy_version": {"type": "string", "maxLength": 128},
        "details": {"type": "object"},
    },
}

AUDIT_INGEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["records"],
    "properties": {"records": {"type": "array", "items": AUDIT_RECORD, "minItems": 1, "maxItems": 500}},
}

CONSUME: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["cell_hash"],
    "properties": {
        "cell_hash": HEX64,
        # The cell's start record, stored with the use in one transaction.
        "records": {"type": "array", "items": AUDIT_RECORD, "minItems": 1, "maxItems": 1},
    },
}


BATCH_REQUEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["msg_id", "code"],
    "properties": {
        "msg_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "code": {"type": "string", "maxLength": 200_000},
        "user_expressions": {"type": "object", "maxProperties": 100},
        "cell_id": {"type": "string", "maxLength": 128},
    },
}
"""``POST /kernel/requests``: a batch run's record of a cell it is about to send to its kernel."""

KERNEL_ID = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}

REGISTER_KERNEL: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kernel_id"],
    "properties": {
        "kernel_id": KERNEL_ID,
        "lease_seconds": {"type": "integer", "minimum": 30, "maximum": 3600},
        "reinstate": {"type": "boolean"},
    },
}
"""``POST /servers/kernels``: a single-user server registers a kernel it is starting, or (``reinstate``)
gives a new lease to the credentials of one of its kernels that lapsed while the service was away."""

LEASE: dict[str, Any] = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "properties": {"lease_seconds": {"type": "integer", "minimum": 30, "maximum": 3600}},
}

SERVER_EVENT_TYPES = "^(request|guard)\\.[a-z0-9_.-]{1,56}$"
"""A single-user server reports what it forwarded to its kernels and what its guards masked."""

SERVER_RECORD = {
    **AUDIT_RECORD,
    "properties": {
        **AUDIT_RECORD["properties"],  # type: ignore[dict-item]
        "event_type": {"type": "string", "pattern": SERVER_EVENT_TYPES},
        "client_addr": {"type": "string", "maxLength": 255},
        "server": {"type": "string", "maxLength": 255},
    },
}

SERVER_REPORT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "records": {"type": "array", "items": SERVER_RECORD, "maxItems": 500},
        "forwarded": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 128},
            "maxItems": 1000,
        },
        "replied": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["msg_id", "status"],
                "properties": {
                    "msg_id": {"type": "string", "minLength": 1, "maxLength": 128},
                    "status": {"type": "string", "maxLength": 32},
                },
            },
            "maxItems": 1000,
        },
        "gone": {"type": "boolean"},
    },
}
"""``POST /servers/kernels/{kernel_id}/report``: the server's records of a kernel, in order, and what
the witness book needs (cells forwarded, replies seen, the kernel gone)."""

SERVER_FILE_RECORDS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["records"],
    "properties": {
        "kernel_id": KERNEL_ID,
        "records": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {
                **SERVER_RECORD,
                "properties": {
                    **SERVER_RECORD["properties"],  # type: ignore[dict-item]
                    "event_type": {"type": "string", "pattern": "^guard\\.[a-z0-9_.-]{1,56}$"},
                },
            },
        },
    },
}
"""``POST /servers/records``: what a server's guards did on its file routes (no ``kernel_id``), or
to one of the person's own kernels whose server credential the server no longer holds (it restarted
with these records still in its spool)."""
