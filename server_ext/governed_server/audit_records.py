"""Audit records: the input event, its canonical body (what is hashed), and the record read back.

The body is canonical JSON (sorted keys, no whitespace, UTF-8) stored byte for byte, so anyone can
recompute a record's hash without this code::

    hash = sha256(canonical_json({"seq": seq, "prev": prev_hash, "record": json.loads(body)}))

Never a raw PAN: every free-text field of an incoming event goes through the shared masking engine
(:mod:`governed_kernel.masking`) before it is hashed and stored. The kernel masks already; this is
the second line (a buggy or tampered kernel must not be able to put a PAN in the audit trail), and
whatever it masked is recorded in ``data.ingest_masked`` so the leak itself is visible to auditors.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from governed_kernel.audit_buffer import new_event_id
from governed_kernel.masking import Masker, MaskingError, MaskReport, mask_json, needs_masking
from governed_kernel.policy import Decision

RECORD_VERSION = 1
OUTCOMES = ("success", "failure")
DEFAULT_OUTPUT_CAP = 64 * 1024
"""Bytes of masked output kept per record; the sha256 always covers the full masked output."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
EVENT_ID_PATTERN = "^[A-Za-z0-9_-]{16,64}$"
"""An event id: made where the record is made (kernel, single-user server, service), unique in the
store; a record sent again with the same id (a retried batch) is stored once."""
_EVENT_ID = re.compile(EVENT_ID_PATTERN)
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")
_COUNT_KEY = re.compile(r"[a-z0-9_]{1,64}")
_MAX_COUNT_DEPTH = 2


class AuditInputError(ValueError):
    """An event is malformed (API callers answer 400); nothing was written."""


@dataclass(frozen=True)
class AuditEvent:
    """What a caller reports; the server adds the time, sequence number and hashes.

    ``code`` and ``output`` are expected masked already (they are masked again on ingest).
    ``output`` is the full masked output; it is capped on ingest. A client that capped it
    itself passes ``output_sha256``/``output_size`` of the full masked output.
    """

    event_type: str
    user: str
    outcome: str = "success"
    claimed_user: str | None = None
    client_addr: str = ""
    server: str = ""
    kernel_id: str = ""
    session_id: str = ""
    notebook: str = ""
    cell_id: str = ""
    cell_hash: str = ""
    tables: Sequence[str] = ()
    code: str = ""
    output: str = ""
    output_sha256: str | None = None
    output_size: int | None = None
    masking: Mapping[str, Any] = field(default_factory=dict)
    approval_id: str | None = None
    policy_version: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=new_event_id)


@dataclass(frozen=True)
class StoredRecord:
    """One record as stored: the hashed body's fields plus its place in the chain."""

    seq: int
    time: datetime
    user: str
    claimed_user: str | None
    event_type: str
    outcome: str
    origin: dict[str, Any]
    resource: dict[str, Any]
    data: dict[str, Any]
    prev_hash: str
    hash: str
    event_id: str | None = None
    """None for records stored before event ids (schema revision 0004)."""
    fresh: bool = field(default=True, compare=False)
    """False when an append found the record already stored (the same event id sent again)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the API and exports."""
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "time": format_time(self.time),
            "user": self.user,
            "claimed_user": self.claimed_user,
            "event_type": self.event_type,
            "outcome": self.outcome,
            "origin": self.origin,
            "resource": self.resource,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def from_body(
        cls, seq: int, body_text: str, prev_hash: str, record_hash: str, *, fresh: bool = True
    ) -> StoredRecord:
        body = json.loads(body_text)
        return cls(
            seq=seq,
            time=parse_time(body["time"]),
            user=body["user"],
            claimed_user=body["claimed_user"],
            event_type=body["event_type"],
            outcome=body["outcome"],
            origin=body["origin"],
            resource=body["resource"],
            data=body["data"],
            prev_hash=prev_hash,
            hash=record_hash,
            event_id=body.get("event_id"),
            fresh=fresh,
        )


# -- canonical form and hashing -------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, non-ASCII kept (encoded as UTF-8 when hashed), no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(seq: int, prev_hash: str, body_text: str) -> str:
    """SHA-256 of ``canonical_json({"prev": ..., "record": body, "seq": ...})``.

    Built by concatenation: ``body_text`` is already canonical, so this equals the formula in the
    module docstring while hashing the stored bytes exactly (any edit of them changes the hash).
    """
    data = f'{{"prev":"{prev_hash}","record":{body_text},"seq":{int(seq)}}}'.encode()
    return hashlib.sha256(data).hexdigest()


def format_time(value: datetime) -> str:
    """``2026-11-29T01:02:03.123456Z`` (always UTC, always microseconds)."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def parse_time(text: str) -> datetime:
    """The inverse of :func:`format_time`; any other form raises ``ValueError``."""
    if _TIME.fullmatch(text):  # fromisoformat is ~20x faster than strptime, on the exact form only
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# -- building a body from an event ------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedEvent:
    """A validated, masked event waiting for its time and sequence number."""

    body: dict[str, Any]
    ingest_masked: int


def prepare(event: AuditEvent, *, output_cap: int, masker: Masker | None = None) -> PreparedEvent:
    """Validate ``event``, mask every free-text field, cap the output. Raises AuditInputError."""
    if not isinstance(event, AuditEvent):
        raise AuditInputError(f"expected an AuditEvent, got {type(event).__name__}")
    _check_hex("cell_hash", event.cell_hash, allow_empty=True)
    if not isinstance(event.event_id, str) or not _EVENT_ID.fullmatch(event.event_id):
        raise AuditInputError("event_id must be 16 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")
    if event.output_sha256 is not None:
        _check_hex("output_sha256", event.output_sha256, allow_empty=False)
    masking_counts = _check_counts(event.masking, "masking", 0)
    free_text: dict[str, Any] = {
        "user": event.user,
        "claimed_user": event.claimed_user,
        "event_type": event.event_type,
        "outcome": event.outcome,
        "origin": {
            "client_addr": event.client_addr,
            "server": event.server,
            "kernel_id": event.kernel_id,
            "session_id": event.session_id,
            "notebook": event.notebook,
        },
        "resource": {"cell_id": event.cell_id, "tables": list(event.tables)},
        "data": {
            "code": event.code,
            "output": event.output,
            "approval_id": event.approval_id,
            "policy_version": event.policy_version,
            "details": dict(event.details),
        },
    }
    try:
        # Keys are the record's field names, not data columns: "span" is not a column ending in "pan".
        if needs_masking(free_text, masker, by_name=False):
            _check_json(free_text)
            masked, report = mask_json(free_text, masker, by_name=False)
        else:  # the common case: plain JSON types, one scan of every string at once, no copy
            masked, report = free_text, MaskReport()
    except MaskingError as error:
        # Fail closed: a record we cannot mask is refused, never stored as is.
        raise AuditInputError(f"the event could not be masked: {error}") from None
    _check_fields(masked)
    data = masked["data"]
    output: str = data.pop("output")
    full = output.encode()
    if event.output_sha256 is not None:
        data["output_sha256"] = event.output_sha256
        data["output_size"] = event.output_size if event.output_size is not None else len(full)
    else:
        data["output_sha256"] = hashlib.sha256(full).hexdigest() if output else None
        data["output_size"] = len(full)
    kept = full[:output_cap].decode(errors="ignore")
    data["output"] = kept
    data["output_truncated"] = len(full) > output_cap or (
        event.output_size is not None and event.output_size > len(full)
    )
    data["masking"] = masking_counts
    if report:
        data["ingest_masked"] = report.as_dict()
    masked["resource"]["cell_hash"] = event.cell_hash
    masked["event_id"] = event.event_id
    masked["v"] = RECORD_VERSION
    return PreparedEvent(body=masked, ingest_masked=report.total)


def finish_body(prepared: PreparedEvent, time: datetime) -> tuple[dict[str, Any], str]:
    """The body with the server's time, and its canonical text. Raises AuditInputError for what
    :func:`prepare` lets through on its fast path (NaN or infinite numbers, lone surrogates)."""
    body = dict(prepared.body)
    body["time"] = format_time(time)
    try:
        text = canonical_json(body)
        text.encode()
    except (TypeError, ValueError, UnicodeEncodeError) as error:
        raise AuditInputError(f"the event is not JSON-serialisable: {error}") from None
    return body, text


def _check_hex(name: str, value: str, *, allow_empty: bool) -> None:
    if not isinstance(value, str) or not ((allow_empty and value == "") or _HEX64.fullmatch(value)):
        raise AuditInputError(f"{name} must be 64 lowercase hex digits (a SHA-256)")


def _check_counts(value: Any, where: str, depth: int) -> dict[str, Any]:
    """Masking counts: nested mappings of short names to non-negative ints (never free text)."""
    if not isinstance(value, Mapping):
        raise AuditInputError(f"{where} must be a mapping of names to counts")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _COUNT_KEY.fullmatch(key):
            raise AuditInputError(f"{where}: keys must match [a-z0-9_]{{1,64}}")
        if isinstance(item, Mapping) and depth < _MAX_COUNT_DEPTH:
            out[key] = _check_counts(item, f"{where}.{key}", depth + 1)
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item < 2**53:
            out[key] = item
        else:
            raise AuditInputError(f"{where}.{key} must be a non-negative integer or a mapping")
    return out


def _check_json(value: Any) -> None:
    try:
        canonical_json(value).encode()
    except (TypeError, ValueError, UnicodeEncodeError) as error:
        raise AuditInputError(f"the event is not JSON-serialisable: {error}") from None


def _check_fields(body: Mapping[str, Any]) -> None:
    user, claimed = body["user"], body["claimed_user"]
    if not isinstance(user, str) or not 0 < len(user) <= 255:
        raise AuditInputError("user must be a non-empty string of at most 255 characters")
    if claimed is not None and (not isinstance(claimed, str) or len(claimed) > 255):
        raise AuditInputError("claimed_user must be a string of at most 255 characters")
    if not isinstance(body["event_type"], str) or not _EVENT_TYPE.fullmatch(body["event_type"]):
        raise AuditInputError("event_type must match [a-z][a-z0-9_.:-]{0,63}")
    if body["outcome"] not in OUTCOMES:
        raise AuditInputError(f"outcome must be one of {', '.join(OUTCOMES)}")
    origin, resource, data = body["origin"], body["resource"], body["data"]
    for name in ("client_addr", "server", "kernel_id", "session_id", "notebook"):
        if not isinstance(origin[name], str):
            raise AuditInputError(f"{name} must be a string")
    if len(origin["kernel_id"]) > 64:
        raise AuditInputError("kernel_id must be at most 64 characters")
    if not isinstance(resource["cell_id"], str) or not all(isinstance(t, str) for t in resource["tables"]):
        raise AuditInputError("cell_id and tables must be strings")
    for name in ("code", "output", "policy_version"):
        if not isinstance(data[name], str):
            raise AuditInputError(f"{name} must be a string")
    if data["approval_id"] is not None and not isinstance(data["approval_id"], str):
        raise AuditInputError("approval_id must be a string or null")


def masked_decision(decision: Decision, mask: Callable[[str], str]) -> dict[str, Any]:
    """A decision as recorded: its texts (which can quote the cell) masked, its positions kept."""
    body = decision.to_dict()
    body["rules"] = [
        {**rule, "subject": mask(str(rule["subject"])), "reason": mask(str(rule["reason"]))}
        for rule in body["rules"]
    ]
    body["notes"] = [mask(str(note)) for note in body["notes"]]
    return body
