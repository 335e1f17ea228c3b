"""Verify the audit chain and name the first bad record and what was done to it.

Records are streamed in sequence order in chunks (constant memory). For each record we check its
own hash, its link to the record before, and that its sequence number follows. When a check fails
we look one record back and one ahead to tell the kinds apart:

- ``modified``: content changed (hash mismatch while the chain still links through the stored hash),
  or a record was rewritten and re-hashed (its successor no longer links to it), or a signed
  checkpoint no longer matches the stored hash (a re-hashed suffix).
- ``deleted``: a sequence number is missing, or one record is missing at the end (proved by the
  chain head or a signed checkpoint).
- ``truncated``: more than one record missing at the end (the same proofs).
- ``inserted``: a record the chain skips over (its neighbours link to each other), or records after
  the chain head.
- ``reordered``: a record that links to the one *after* it.
- ``bad-signature``: a checkpoint whose Ed25519 signature does not verify, or signed by an unknown key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, func, select

from governed_server.audit_records import StoredRecord, format_time, record_hash
from governed_server.service.audit_checkpoints import Checkpoint, signature_valid, unique
from governed_server.service.store.schema import GENESIS_HASH, audit_head, audit_records

KINDS = ("modified", "deleted", "inserted", "reordered", "truncated", "bad-signature")
CHUNK = 5000
MAX_PROBLEMS = 100


@dataclass(frozen=True)
class Problem:
    """One finding: the first affected record's seq, the kind (see :data:`KINDS`) and why."""

    seq: int
    kind: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "detail": self.detail}


@dataclass
class VerifyReport:
    """The outcome of :meth:`AuditLog.verify`; ``ok`` only when nothing at all is wrong."""

    total: int = 0
    valid: int = 0
    head_seq: int = 0
    problems: list[Problem] = field(default_factory=list)
    last_checkpoint: tuple[int, datetime] | None = None
    checkpoints: int = 0
    warnings: list[str] = field(default_factory=list)
    more_problems: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and self.valid == self.total

    @property
    def first_bad(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def summary(self) -> str:
        """One line, e.g. ``1234/1234 records valid, chain intact to checkpoint 1200 signed at T``."""
        head = f"{self.valid}/{self.total} records valid"
        if self.problems:
            first = self.problems[0]
            more = len(self.problems) - 1 + self.more_problems
            tail = f"; {more} more problem(s)" if more else ""
            return f"{head}, first bad record {first.seq} ({first.kind}: {first.detail}){tail}"
        if self.last_checkpoint is None:
            return f"{head}, chain intact (no signed checkpoint yet)"
        seq, signed_at = self.last_checkpoint
        return f"{head}, chain intact to checkpoint {seq} signed at {_iso(signed_at)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "total": self.total,
            "valid": self.valid,
            "head_seq": self.head_seq,
            "last_checkpoint": (
                {"seq": self.last_checkpoint[0], "signed_at": _iso(self.last_checkpoint[1])}
                if self.last_checkpoint
                else None
            ),
            "checkpoints": self.checkpoints,
            "problems": [p.to_dict() for p in self.problems],
            "more_problems": self.more_problems,
            "warnings": self.warnings,
            "summary": self.summary(),
        }


def _iso(value: datetime) -> str:
    return format_time(value).split(".")[0] + "Z"


@dataclass
class _Row:
    seq: int
    body: str
    prev: str
    hash: str
    columns: tuple[Any, ...]


def _rows(connection: Connection) -> Iterator[_Row]:
    t = audit_records.c
    last = 0
    while True:
        chunk = connection.execute(
            select(
                t.seq,
                t.body,
                t.prev_hash,
                t.hash,
                t.event_time,
                t.user,
                t.claimed_user,
                t.event_type,
                t.outcome,
                t.kernel_id,
                t.notebook,
                t.event_id,
            )
            .where(t.seq > last)
            .order_by(t.seq)
            .limit(CHUNK)
        ).all()
        if not chunk:
            return
        for r in chunk:
            yield _Row(int(r[0]), r[1], r[2], r[3], tuple(r[4:]))
        last = int(chunk[-1][0])


def _hash_ok(row: _Row, seq: int) -> bool:
    return record_hash(seq, row.prev, row.body) == row.hash


def _self_check(row: _Row, seq: int) -> str | None:
    """Why ``row`` is not internally consistent when hashed as number ``seq``, or None."""
    if not _hash_ok(row, seq):
        return "content does not match its hash"
    try:
        record = StoredRecord.from_body(row.seq, row.body, row.prev, row.hash)
        body = (
            record.time,
            record.user,
            record.claimed_user,
            record.event_type,
            record.outcome,
            record.origin["kernel_id"],
            record.origin["notebook"],
            record.event_id,
        )
    except (ValueError, KeyError, TypeError):
        return "body is not a valid record"
    if body != row.columns:
        return "indexed columns differ from the hashed body"
    return None


class _Verifier:
    """Walks the records in order, one record of lookahead, and classifies each break.

    After a break it resynchronises so one tampering is reported once: records renumbered by an
    insertion or deletion are checked under their original number (``shift``), and the second
    record of a swapped pair is not reported again.
    """

    def __init__(self, report: VerifyReport, checkpoint_seqs: set[int]) -> None:
        self.report = report
        self.expected_seq = 1
        self.expected_prev = GENESIS_HASH
        self.before_prev: str | None = None  # expected_prev before the last accepted record
        self.shift = 0  # original seq = stored seq + shift
        self.partner: tuple[str, str] | None = None  # (hash of a swapped record's partner, its own hash)
        self.checkpoint_seqs = checkpoint_seqs
        self.hashes_at: dict[int, str] = {}
        self.last_seq = 0
        self.last_hash = GENESIS_HASH

    def problem(self, seq: int, kind: str, detail: str) -> None:
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(Problem(seq, kind, detail))
        else:
            self.report.more_problems += 1

    def advance(self, cur: _Row, *, prev: str | None = None, link: bool = True) -> None:
        if link:
            self.before_prev = self.expected_prev
            self.expected_prev = cur.hash if prev is None else prev
        self.expected_seq = cur.seq + 1
        self.last_seq, self.last_hash = cur.seq, cur.hash

    def visit(self, cur: _Row, nxt: _Row | None) -> None:
        self.report.total += 1
        if cur.seq in self.checkpoint_seqs:
            self.hashes_at[cur.seq] = cur.hash
        if self.partner is not None and cur.hash == self.partner[0]:
            # Second half of a swapped pair (already reported): the chain goes on from the first half.
            self.advance(cur, prev=self.partner[1])
            self.partner = None
            return
        self.partner = None
        why = _self_check(cur, cur.seq + self.shift)
        linked = cur.prev == self.expected_prev
        if cur.seq > self.expected_seq:
            missing = cur.seq - self.expected_seq
            first = self.expected_seq
            span = f"record {first}" if missing == 1 else f"records {first}-{cur.seq - 1}"
            self.problem(first, "deleted", f"{span} missing from the sequence")
            self.report.valid += why is None
            self.advance(cur)
        elif why is None and linked:
            self.report.valid += 1
            self.advance(cur)
        elif why is not None:
            self._classify_bad(cur, nxt, why, linked)
        else:
            self._classify_unlinked(cur)

    def _classify_bad(self, cur: _Row, nxt: _Row | None, why: str, linked: bool) -> None:
        seq = cur.seq
        if linked and (nxt is None or nxt.prev == cur.hash):
            self.problem(seq, "modified", why)
            self.advance(cur)
        elif nxt is not None and cur.prev == nxt.hash:
            self.problem(seq, "reordered", f"record {seq} belongs after record {nxt.seq}")
            self.partner = (nxt.hash, cur.hash)
            self.advance(cur)
        elif nxt is not None and nxt.prev == self.expected_prev:
            self.problem(seq, "inserted", "not part of the chain: the records around it link to each other")
            self.shift -= 1
            self.advance(cur, link=False)
        elif _hash_ok(cur, seq + self.shift + 1):
            self.problem(seq, "deleted", f"the record before {seq} was removed and later ones renumbered")
            self.shift += 1
            self.report.valid += 1
            self.advance(cur)
        elif cur.prev == self.before_prev and _hash_ok(cur, seq + self.shift - 1):
            self._inserted_before(cur)
            self.shift -= 1
        else:
            self.problem(seq, "modified", why)
            self.advance(cur)

    def _classify_unlinked(self, cur: _Row) -> None:
        if cur.prev == self.before_prev:
            self._inserted_before(cur)
            return
        if cur.seq == 1:
            self.problem(1, "modified", "the first record does not start from the genesis hash")
        else:
            # The previous record is self-consistent but is not the one this record was chained to.
            self.problem(cur.seq - 1, "modified", f"record {cur.seq - 1} was rewritten and re-hashed")
        self.advance(cur)

    def _inserted_before(self, cur: _Row) -> None:
        # The record accepted just before is not in the chain: ``cur`` links to the one before it.
        self.problem(
            cur.seq - 1, "inserted", "not part of the chain: the records around it link to each other"
        )
        self.expected_prev = self.before_prev or GENESIS_HASH
        self.advance(cur)


def verify_chain(
    connection: Connection,
    checkpoints: list[Checkpoint],
    keys: Mapping[str, Ed25519PublicKey],
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Check every record, the chain head and every checkpoint; see the module docstring."""
    report = VerifyReport()
    total = int(connection.execute(select(func.count()).select_from(audit_records)).scalar_one())
    checkpoints = unique(checkpoints)
    report.checkpoints = len(checkpoints)
    verifier = _Verifier(report, {c.seq for c in checkpoints})
    rows = _rows(connection)
    cur = next(rows, None)
    done = 0
    while cur is not None:
        nxt = next(rows, None)
        verifier.visit(cur, nxt)
        cur = nxt
        done += 1
        if progress is not None and (done % 1000 == 0 or cur is None):
            progress(done, total)
    if progress is not None and done == 0:
        progress(0, 0)
    head = connection.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one()
    report.head_seq = int(head.seq)
    _check_tail(verifier, int(head.seq), str(head.hash), "the chain head")
    _check_checkpoints(verifier, checkpoints, keys)
    report.problems = _dedupe(report.problems)
    return report


def _check_tail(verifier: _Verifier, seq: int, head_hash: str, source: str) -> None:
    last = verifier.last_seq
    if seq > last:
        kind = "deleted" if seq - last == 1 else "truncated"
        verifier.problem(last + 1, kind, f"{source} records {seq} entries but the log ends at {last}")
    elif seq < last:
        verifier.problem(seq + 1, "inserted", f"records after {source} ({seq})")
    elif head_hash != verifier.last_hash:
        verifier.problem(seq, "modified", f"record {seq} does not match {source}")


def _check_checkpoints(
    verifier: _Verifier, checkpoints: list[Checkpoint], keys: Mapping[str, Ed25519PublicKey]
) -> None:
    report = verifier.report
    if checkpoints and not keys:
        report.warnings.append(
            "no trusted public key (give --public-key or the checkpoint directory): "
            "checkpoints cannot be checked"
        )
    previous_good = 0
    good: list[Checkpoint] = []
    for checkpoint in checkpoints:
        valid = signature_valid(checkpoint, keys)
        if valid is None:
            verifier.problem(
                checkpoint.seq,
                "bad-signature",
                f"checkpoint {checkpoint.seq} signed by unknown key {checkpoint.key_id}",
            )
            continue
        if not valid:
            verifier.problem(
                checkpoint.seq, "bad-signature", f"checkpoint {checkpoint.seq}: signature invalid"
            )
            continue
        stored = verifier.hashes_at.get(checkpoint.seq)
        if checkpoint.seq > verifier.last_seq:
            _check_tail(verifier, checkpoint.seq, checkpoint.head_hash, f"signed checkpoint {checkpoint.seq}")
        elif stored != checkpoint.head_hash:
            if any(previous_good < p.seq <= checkpoint.seq for p in report.problems):
                continue  # already explained by a break found in the chain itself
            verifier.problem(
                previous_good + 1,
                "modified",
                f"records {previous_good + 1}-{checkpoint.seq} were "
                f"rewritten: record {checkpoint.seq} differs from its signed checkpoint",
            )
        else:
            previous_good = checkpoint.seq
            good.append(checkpoint)
    first_bad = min((p.seq for p in report.problems), default=None)
    intact = [c for c in good if first_bad is None or c.seq < first_bad]
    if intact:
        report.last_checkpoint = (intact[-1].seq, intact[-1].signed_at)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: dict[tuple[int, str], Problem] = {}
    for problem in problems:
        seen.setdefault((problem.seq, problem.kind), problem)
    # At one seq, the structural finding (e.g. "inserted" from the head) explains a hash mismatch.
    return sorted(
        seen.values(), key=lambda p: (p.seq, _PRIORITY.index(p.kind) if p.kind in _PRIORITY else 99)
    )


_PRIORITY = ("inserted", "deleted", "truncated", "reordered", "modified", "bad-signature")


__all__ = ["KINDS", "Problem", "VerifyReport", "verify_chain"]
