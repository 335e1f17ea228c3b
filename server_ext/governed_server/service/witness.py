"""Two witnesses of every cell: the server's record of the request and the kernel's own record.

The server records each cell it forwards to a kernel (``request.execute``, by msg_id) before the
kernel sees it; the governed kernel records the cells it runs (``cell.start`` and friends, with the
same msg_id). Either without the other means something went around a control:

- a forwarded cell the kernel answered but never recorded (after a grace period): the kernel's
  governor was switched off or bypassed (``integrity.witness_missing``);
- a kernel record for a request this server never forwarded, from a kernel this server guards:
  someone spoke to the kernel's sockets directly, or the kernel sent itself a request
  (``integrity.unguarded_request``). The two witnesses may arrive in either order: in client mode
  the single-user server reports what it forwarded with its next report (every second), while the
  kernel sends its start record at once; so a kernel record with no forward yet waits the grace
  period for it before it is an alert.

Cells that legitimately leave no kernel record are told apart and recorded as what they are:
aborted after an earlier error (ipykernel answers ``status: aborted`` without running them:
``request.aborted``), and lost with a kernel that died or restarted before answering
(``request.lost``).

Pure bookkeeping in memory (a server restart forgets what was outstanding); the service writes
the records and raises the integrity events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

WITNESSED_EVENTS = frozenset({"cell.start", "cell.blocked", "cell.denied", "cell.awaiting_approval"})
"""Kernel records that witness a request (the kernel saw it, whatever it then did)."""
GRACE_S = 30.0
"""How long after the kernel's reply its record may still be on its way (buffered, retried)."""
UNANSWERED_S = 6 * 3600.0
"""A forwarded request with no answer seen for this long is forgotten (recorded as unanswered)."""


@dataclass
class Outstanding:
    kernel_id: str
    msg_id: str
    user: str
    forwarded_at: float
    reply: str | None = None
    replied_at: float | None = None
    lost: bool = False


@dataclass(frozen=True)
class Finding:
    """What the book found: ``kind`` is the record's event type; ``alert`` whether it is an integrity
    problem (as opposed to a cell that legitimately left no kernel record)."""

    kind: str
    kernel_id: str
    msg_id: str
    user: str
    alert: bool
    summary: str


def _as_is(msg_id: str) -> str:
    return msg_id


@dataclass
class WitnessBook:
    grace_s: float = GRACE_S
    clock: Callable[[], float] = time.monotonic
    masked: Callable[[str], str] = _as_is
    """A msg_id as the records hold it: the kernel masks its records, a msg_id with a card-number-like
    run of digits included, while the server reports the ids it forwarded as they were; both sides
    are matched in this form."""
    outstanding: dict[tuple[str, str], Outstanding] = field(default_factory=dict)
    guarded: set[str] = field(default_factory=set)
    """Kernels whose requests pass this server's guard (kernel records of others are not checked)."""
    unforwarded: dict[tuple[str, str], Outstanding] = field(default_factory=dict)
    """Kernel records whose forward is not reported yet (``forwarded_at``: when the record came)."""

    def forwarded(self, kernel_id: str, msg_id: str, user: str) -> None:
        self.guarded.add(kernel_id)
        msg_id = self.masked(msg_id)
        if self.unforwarded.pop((kernel_id, msg_id), None) is not None:
            return  # the kernel's record came first: both witnesses are in
        self.outstanding[(kernel_id, msg_id)] = Outstanding(kernel_id, msg_id, user, self.clock())

    def guards(self, kernel_id: str) -> None:
        """Every request to ``kernel_id`` passes this server from now on (its websocket opened)."""
        self.guarded.add(kernel_id)

    def replied(self, kernel_id: str, msg_id: str, status: str) -> None:
        item = self.outstanding.get((kernel_id, self.masked(msg_id)))
        if item is not None and item.reply is None:
            item.reply, item.replied_at = status, self.clock()

    def kernel_gone(self, kernel_id: str) -> None:
        """The kernel died or restarted: what it had not answered will never be answered."""
        for item in self.outstanding.values():
            if item.kernel_id == kernel_id and item.reply is None:
                item.lost = True

    def witnessed(self, kernel_id: str, msg_id: str, user: str) -> None:
        """A kernel record for ``msg_id`` arrived; without a forward of it, :meth:`due` reports it
        once the grace period passed and the forward still did not come."""
        msg_id = self.masked(msg_id)
        if self.outstanding.pop((kernel_id, msg_id), None) is not None or kernel_id not in self.guarded:
            return
        if not msg_id:
            return  # a record of the kernel's own (start-up, shutdown), not of a request
        self.unforwarded[(kernel_id, msg_id)] = Outstanding(kernel_id, msg_id, user, self.clock())

    def due(self) -> list[Finding]:
        """Outstanding requests that are now settled without a kernel record, and kernel records
        whose forward never came (each reported once, then forgotten)."""
        now, found = self.clock(), []
        for key, item in list(self.outstanding.items()):
            finding = self._settled(item, now)
            if finding is not None:
                found.append(finding)
                del self.outstanding[key]
        for key, item in list(self.unforwarded.items()):
            if now - item.forwarded_at > self.grace_s:
                summary = (
                    f"kernel {item.kernel_id} recorded a cell (msg_id {item.msg_id}) that this server "
                    "never forwarded: something sent it to the kernel around the server's guard"
                )
                found.append(Finding("integrity.unguarded_request", *key, item.user, True, summary))
                del self.unforwarded[key]
        return found

    def _settled(self, item: Outstanding, now: float) -> Finding | None:
        def finding(kind: str, alert: bool, summary: str) -> Finding:
            return Finding(kind, item.kernel_id, item.msg_id, item.user, alert, summary)

        if item.lost:
            return finding("request.lost", False, "the kernel died or restarted before it answered")
        if item.reply == "aborted":
            return finding("request.aborted", False, "the kernel aborted it after an earlier error (not run)")
        if item.replied_at is not None and now - item.replied_at > self.grace_s:
            return finding(
                "integrity.witness_missing",
                True,
                f"kernel {item.kernel_id} answered request {item.msg_id} ({item.reply}) but never "
                "recorded it: its own governance was switched off or bypassed",
            )
        if item.reply is None and now - item.forwarded_at > UNANSWERED_S:
            return finding("request.unanswered", False, "no answer from the kernel seen by this server")
        return None
