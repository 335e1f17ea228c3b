"""Many OS processes appending at once still make one chain: contiguous seqs, no fork, verify passes."""

from __future__ import annotations

import multiprocessing

from sqlalchemy import func, select
from store_helpers import AuditPaths, event  # type: ignore[import-not-found]

from governed_server.service.audit import AuditLog
from governed_server.service.store import Store, audit_records, open_store

WRITERS = 20
PER_WRITER = 50
BATCH = 5


def _writer(url: str, worker: int, signing_key: str, checkpoint_dir: str) -> list[int]:
    store = open_store(url)  # every process migrates-or-skips on open, as servers do
    try:
        audit = AuditLog(
            store, signing_key_path=signing_key, checkpoint_dir=checkpoint_dir, checkpoint_every=100
        )
        seqs: list[int] = []
        for start in range(0, PER_WRITER, BATCH):
            batch = [
                event(start + i, user=f"writer-{worker}", details={"n": start + i}) for i in range(BATCH)
            ]
            seqs.extend(record.seq for record in audit.append(batch))
        return seqs
    finally:
        store.close()


def test_concurrent_writers_make_one_chain(db_url: str, store: Store, audit_paths: AuditPaths) -> None:
    store.engine.dispose()  # no pooled connection may cross the fork
    context = multiprocessing.get_context("fork")
    arguments = [
        (db_url, worker, str(audit_paths["signing_key_path"]), str(audit_paths["checkpoint_dir"]))
        for worker in range(WRITERS)
    ]
    with context.Pool(WRITERS) as pool:
        results = pool.starmap(_writer, arguments, chunksize=1)

    total = WRITERS * PER_WRITER
    assigned = sorted(seq for seqs in results for seq in seqs)
    assert assigned == list(range(1, total + 1))  # every append got its own seq, none twice
    for seqs in results:
        assert seqs == sorted(seqs)  # each writer's batches stay in order
    with store.read() as connection:
        rows = connection.execute(select(audit_records.c.seq, audit_records.c.prev_hash)).all()
        distinct_prev = connection.execute(
            select(func.count(func.distinct(audit_records.c.prev_hash)))
        ).scalar()
    assert sorted(r.seq for r in rows) == list(range(1, total + 1))
    assert distinct_prev == total  # a fork would give two records the same predecessor

    audit = AuditLog(store, **audit_paths)
    checkpoints = audit.checkpoints()
    assert checkpoints, "automatic checkpoints were written by the writers"
    audit.checkpoint()
    report = audit.verify()
    assert report.ok, report.summary()
    assert report.summary().startswith(f"{total}/{total} records valid, chain intact to checkpoint {total} ")
    per_user = {r.user for r in audit.query(limit=total)}
    assert per_user == {f"writer-{w}" for w in range(WRITERS)}
