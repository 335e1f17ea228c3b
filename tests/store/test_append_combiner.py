"""Appends from many threads share transactions and still make one total order."""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select
from store_helpers import AuditPaths, event  # type: ignore[import-not-found]

from governed_server.audit_records import AuditInputError, prepare
from governed_server.service.append_combiner import AppendCombiner
from governed_server.service.audit import AuditLog
from governed_server.service.store import Store, audit_records

THREADS = 12
BATCHES = 15
PER_BATCH = 4


def test_waiting_batches_are_written_together_each_caller_gets_its_own_answer() -> None:
    written: list[list[int]] = []
    gate = threading.Event()

    def write(batches: list[int]) -> list[int | BaseException]:
        if not written:
            gate.wait(5)  # the first write is slow: the others queue up behind it
        written.append(list(batches))
        return [ValueError(f"bad {b}") if b % 5 == 0 else b * 10 for b in batches]

    combiner: AppendCombiner[int, int] = AppendCombiner(write)

    def call(batch: int) -> int | str:
        try:
            return combiner.append(batch)
        except ValueError as error:
            return str(error)

    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(call, 1)
        time.sleep(0.2)
        rest = [pool.submit(call, b) for b in range(2, 12)]
        time.sleep(0.3)
        gate.set()
        results = [first.result(), *(f.result() for f in rest)]
    assert results == [10, 20, 30, 40, "bad 5", 60, 70, 80, 90, "bad 10", 110]
    assert written[0] == [1] and len(written) < 11  # the ten that waited were combined
    assert sorted(b for group in written for b in group) == list(range(1, 12))


def test_a_failed_transaction_fails_every_batch_in_it_and_the_next_caller_writes_again() -> None:
    calls = {"n": 0}

    def write(batches: list[int]) -> list[int | BaseException]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("database gone")
        return list(batches)

    combiner: AppendCombiner[int, int] = AppendCombiner(write)
    with pytest.raises(ConnectionError):
        combiner.append(1)
    assert combiner.append(2) == 2


def test_many_threads_appending_make_one_chain_with_each_batch_together(
    store: Store, audit_paths: AuditPaths
) -> None:
    audit = AuditLog(store, **audit_paths)

    def writer(worker: int) -> list[list[int]]:
        seqs = []
        for b in range(BATCHES):
            batch = [event(b * PER_BATCH + i, user=f"w{worker}") for i in range(PER_BATCH)]
            seqs.append([record.seq for record in audit.append(batch)])
        return seqs

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(writer, range(THREADS)))
    total = THREADS * BATCHES * PER_BATCH
    every = sorted(seq for batches in results for batch in batches for seq in batch)
    assert every == list(range(1, total + 1))
    for batches in results:
        flat = [seq for batch in batches for seq in batch]
        assert flat == sorted(flat)  # a writer's batches in its order
        for batch in batches:
            assert batch == list(range(batch[0], batch[0] + PER_BATCH))  # a batch stays together
    assert audit.combiner.groups < THREADS * BATCHES, "no append was ever combined"
    assert audit.verify().ok


def test_a_refused_batch_does_not_fail_the_batches_written_with_it(
    store: Store, audit_paths: AuditPaths
) -> None:
    audit = AuditLog(store, **audit_paths)
    (taken,) = audit.append([event(0)])
    forged = dataclasses.replace(event(1), user="mallory", event_id=str(taken.event_id))
    batches = [[prepare(e, output_cap=1024) for e in group] for group in ([event(2)], [forged], [event(3)])]
    first, refused, last = audit._write_groups(batches)
    assert isinstance(refused, AuditInputError)
    assert isinstance(first, list) and isinstance(last, list)
    assert [r.seq for r in first + last] == [2, 3]
    with store.read() as connection:
        users = connection.execute(select(audit_records.c.user).order_by(audit_records.c.seq)).scalars().all()
    assert users == ["alice", "alice", "alice"]
    assert audit.verify().ok
