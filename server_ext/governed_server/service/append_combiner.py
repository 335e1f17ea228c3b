"""Appends from many threads committed together, in one total order.

Under load every kernel's records arrive on their own request, each waiting for the chain head's
lock and a commit of its own. The combiner lets whichever caller finds no write running take every
batch waiting at that moment and write them in one transaction (one lock of the head, one commit,
one fsync); the others wait for its answer, each getting its own records or its own error. Batches
keep the order they arrived in, and the records of each batch stay together and in order, so the
chain is one total order as before (flat combining, as in group commit of databases). A lone caller
writes at once: no timer, no added latency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Batch = TypeVar("Batch")
Result = TypeVar("Result")

MAX_GROUP = 64
"""Batches written in one transaction at most (a batch holds up to 500 records)."""


@dataclass
class _Slot(Generic[Batch, Result]):
    batch: Batch
    done: bool = False
    result: Result | None = None
    error: BaseException | None = None


@dataclass
class AppendCombiner(Generic[Batch, Result]):
    """``write(batches)`` stores the batches in one transaction and returns, per batch, its result or
    the exception that batch alone raises (an exception raised by ``write`` fails them all)."""

    write: Callable[[list[Batch]], list[Result | BaseException]]
    max_group: int = MAX_GROUP
    _queue: list[_Slot[Batch, Result]] = field(default_factory=list)
    _writing: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)
    groups: int = 0
    """Transactions written (a measure: batches / groups is how much was combined)."""

    def append(self, batch: Batch) -> Result:
        slot: _Slot[Batch, Result] = _Slot(batch)
        with self._cond:
            self._queue.append(slot)
        while True:
            with self._cond:
                while self._writing and not slot.done:
                    self._cond.wait()
                if slot.done:
                    break
                self._writing = True  # this caller writes what waits (its own batch among them)
                group, self._queue = self._queue[: self.max_group], self._queue[self.max_group :]
            self._write(group)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _write(self, group: list[_Slot[Batch, Result]]) -> None:
        try:
            outcomes = self.write([slot.batch for slot in group])
        except BaseException as error:  # the whole transaction failed: every batch in it did
            outcomes = [error] * len(group)
        with self._cond:
            for slot, outcome in zip(group, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    slot.error = outcome
                else:
                    slot.result = outcome
                slot.done = True
            self.groups += 1
            self._writing = False
            self._cond.notify_all()
