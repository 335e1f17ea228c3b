"""How the kernel's audit records reach the service: start records before their cell, end records after.

A start record is on every cell's critical path (the cell runs only once it is stored), so it goes
alone on the audit stream and its answer is read at the start gate. An end record is written to the
local buffer, then to the stream right after its cell (before the reply, so the service stores it
while the kernel and the frontend finish the cell); its answer is read with the next start record's.
The log then holds every cell's records in execution order: start, end, start, end.

Batches (``GOVERNED_AUDIT_BATCH=N``, off by default): when cells run back to back, end records wait
until N of them wait, or the oldest has waited :data:`END_BATCH_WINDOW_S`, or no cell has started for
:data:`IDLE_FLUSH_S`, or the kernel shuts down, and then go in one message. That saves the service a
wake-up, a frame and a transaction per cell (measured: 3 to 6% of a batch run's time on two
cores), but a batch's end records are stored after the start records of the cells that ran in the
meantime (each cell's own start still comes before its end). While a long cell runs, the end records
of the cells just before it wait for it.

Records the service did not take stay buffered and go again with the next message: by default with
the next cell's start record, and that cell does not run until they are stored (fail closed: nothing
is silently dropped); with batches, once the oldest has waited :data:`END_BATCH_WINDOW_S`. Waiting records
are in this process's memory and in the buffer file, which survives the process: a kernel restarted
with the same connection file sends them before its first cell runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from governed_kernel.audit_buffer import AuditBuffer
from governed_kernel.audit_stream import PendingBatch
from governed_kernel.client import ApprovalRefused, GovernanceClient, GovernanceUnavailable
from governed_kernel.start_gate import UNDELIVERED, PendingStart

T = TypeVar("T")
BATCH_ENV = "GOVERNED_AUDIT_BATCH"
END_BATCH_SIZE = 1
"""End records that may wait for a batch (the default of ``GOVERNED_AUDIT_BATCH``): none."""
END_BATCH_WINDOW_S = 1.0
"""The longest an end record waits while cells run back to back."""
IDLE_FLUSH_S = 0.02
"""Waiting end records leave once no cell has started for this long."""
MAX_MESSAGE_RECORDS = 200
"""Records per message (more go over HTTP in chunks)."""


class AuditUndelivered(Exception):
    """Records could not be delivered now; the cell that needed them must not run."""


def batch_size_from(environ: dict[str, str]) -> int:
    """``GOVERNED_AUDIT_BATCH`` (a positive number of end records); raises ValueError with the fix."""
    raw = environ.get(BATCH_ENV, "").strip()
    if not raw:
        return END_BATCH_SIZE
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_MESSAGE_RECORDS:
        raise ValueError(
            f"{BATCH_ENV}={raw!r} is not a number of end records between 1 and {MAX_MESSAGE_RECORDS} "
            "(1, the default: each end record right after its cell)"
        )
    return size


class RecordDelivery:
    """The kernel's outgoing audit records: one send lock, the local buffer, the batch on its way."""

    def __init__(self, client: GovernanceClient | None, buffer: AuditBuffer, batch_size: int) -> None:
        self.client = client
        self.buffer = buffer
        self.batch_size = batch_size
        self._lock = asyncio.Lock()
        self._in_flight: tuple[PendingBatch, int] | None = None
        """The end records on the stream whose answer is not read yet, and how many they are."""
        self._idle_timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Future[None]] = set()

    # -- the three kinds of delivery ---------------------------------------------------------------

    async def send(self, records: list[dict[str, Any]]) -> None:
        """Deliver every buffered record, then ``records``, and wait; raise AuditUndelivered if not."""
        self._cancel_idle_flush()
        async with self._lock:
            await self._deliver_waiting(records)

    async def send_then(self, call: Callable[[], Awaitable[T]]) -> T:
        """Deliver every buffered record, then make ``call``, a request that stores records of its
        own (an approval's use with the cell's start record), before any other batch can go."""
        self._cancel_idle_flush()
        async with self._lock:
            await self._deliver_waiting([])
            return await call()

    async def _deliver_waiting(self, records: list[dict[str, Any]]) -> None:
        """With the lock held: the buffered records, then ``records``; raise AuditUndelivered if not."""
        assert self.client is not None
        self._settle()
        waiting = self.buffer.pending()
        batch = waiting + records
        try:
            for first in range(0, len(batch), MAX_MESSAGE_RECORDS):
                await self.client.send_audit(batch[first : first + MAX_MESSAGE_RECORDS])
        except (GovernanceUnavailable, ApprovalRefused) as error:
            raise AuditUndelivered(f"{UNDELIVERED}: {error}") from None
        if waiting:
            self.buffer.forget_first(len(waiting))

    async def start(self, records: list[dict[str, Any]]) -> PendingStart | None:
        """Put ``records`` (a start record) on the audit stream and return at once; its answer (and the
        end records' batch before it) is read by :meth:`PendingStart.finish`. None when they were
        delivered now instead (no stream: HTTP). Waiting end records go along when overdue.
        The lock is held until the answer is read, so no other batch can come in between."""
        assert self.client is not None
        self._cancel_idle_flush()
        await self._lock.acquire()
        in_flight = self._in_flight
        try:
            if in_flight is not None and self.buffer.count != in_flight[1]:
                self._settle()  # more records were buffered behind the batch: read its answer now
                in_flight = None
            self._in_flight = None
            overdue = self.buffer.pending() if in_flight is None and self._overdue() else []
            batch = overdue + records
            handle = self.client.start_audit(batch) if len(batch) <= MAX_MESSAGE_RECORDS else None
        except (GovernanceUnavailable, ApprovalRefused) as error:
            self._in_flight = in_flight
            self._lock.release()
            raise AuditUndelivered(f"{UNDELIVERED}: {error}") from None
        except BaseException:
            self._in_flight = in_flight
            self._lock.release()
            raise
        if handle is None:
            self._in_flight = in_flight
            self._lock.release()
            await self.send(records)
            return None
        return PendingStart(self._finisher(in_flight), handle, self._on_answered(len(overdue)))

    async def end(self, record: dict[str, Any]) -> None:
        """Buffer a cell's end record; put the waiting ones on the stream when a batch is due."""
        self.buffer.append([record], durable=False)
        if self.buffer.count >= self.batch_size or self.buffer.age() >= END_BATCH_WINDOW_S:
            await self._flush()
        else:
            self._schedule_idle_flush()

    async def close(self) -> None:
        """Deliver what is left (at shutdown); what cannot be stays in the buffer file."""
        self._cancel_idle_flush()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.send([])
        self.buffer.close()

    # -- batches -----------------------------------------------------------------------------------

    def _overdue(self) -> bool:
        """Waiting records must go with the next start record (not in flight: a send failed)."""
        if self.buffer.count == 0:
            return False
        return self.batch_size == 1 or self.buffer.age() >= END_BATCH_WINDOW_S

    async def _flush(self) -> None:
        """Write the waiting records to the stream without waiting for the answer; without the
        stream, send them over HTTP now. A failure leaves them buffered (see the module)."""
        async with self._lock:
            waiting = self.buffer.pending()
            if self._in_flight is not None or not waiting or self.client is None:
                return
            try:
                handle = self.client.start_audit(waiting) if len(waiting) <= MAX_MESSAGE_RECORDS else None
            except (GovernanceUnavailable, ApprovalRefused):
                return
            if handle is not None:
                self._in_flight = (handle, len(waiting))
                return
        with contextlib.suppress(AuditUndelivered):
            await self.send([])

    def _settle(self) -> None:
        """Read the answer for the batch on the stream (the lock is held): delivered records leave
        the buffer; the others stay for the next batch."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None or self.client is None:
            return
        handle, count = in_flight
        try:
            self.client.finish_audit(handle)
        except (GovernanceUnavailable, ApprovalRefused):
            return
        self.buffer.forget_first(count)

    def _finisher(self, in_flight: tuple[PendingBatch, int] | None) -> Callable[[PendingBatch], Any]:
        """Reads the batch's answer (if one was on the stream), then the start record's."""
        client = self.client
        assert client is not None

        def finish(start: PendingBatch) -> Any:
            if in_flight is not None:
                self._in_flight = in_flight
                self._settle()
            return client.finish_audit(start)

        return finish

    def _on_answered(self, overdue: int) -> Callable[[bool], None]:
        def answered(delivered: bool) -> None:
            if delivered and overdue:
                self.buffer.forget_first(overdue)
            self._lock.release()

        return answered

    # -- the idle flush ----------------------------------------------------------------------------

    def _schedule_idle_flush(self) -> None:
        if self._idle_timer is not None:
            return
        loop = asyncio.get_running_loop()

        def flush() -> None:
            self._idle_timer = None
            task = asyncio.ensure_future(self._flush())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

        self._idle_timer = loop.call_later(IDLE_FLUSH_S, flush)

    def _cancel_idle_flush(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
