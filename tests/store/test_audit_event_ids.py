"""Event ids: a record sent again (its answer lost, its sender restarted) is stored exactly once."""

from __future__ import annotations

import dataclasses
import multiprocessing
import re

import pytest
from sqlalchemy import func, select, text
from store_helpers import AuditPaths, event  # type: ignore[import-not-found]

from governed_kernel.masking import Masker
from governed_server.audit_records import AuditInputError
from governed_server.service.audit import AuditLog
from governed_server.service.store import Store, audit_records, open_store


def count(store: Store) -> int:
    with store.read() as connection:
        return int(connection.execute(select(func.count()).select_from(audit_records)).scalar_one())


def test_a_batch_sent_again_is_stored_once(store: Store, audit_paths: AuditPaths) -> None:
    audit = AuditLog(store, **audit_paths)
    batch = [event(n) for n in range(4)]
    first = audit.append(batch)
    head = audit.head()
    again = audit.append(batch)
    assert count(store) == 4 and audit.head() == head  # the chain did not move
    assert [r.seq for r in again] == [r.seq for r in first]
    assert [r.hash for r in again] == [r.hash for r in first]
    assert all(r.fresh for r in first) and not any(r.fresh for r in again)
    assert [r.event_id for r in audit.query()] == [e.event_id for e in batch]
    assert audit.verify().ok


def test_a_partly_stored_batch_stores_only_what_is_new(store: Store, audit_paths: AuditPaths) -> None:
    audit = AuditLog(store, **audit_paths)
    batch = [event(n) for n in range(5)]
    audit.append(batch[:2])
    result = audit.append(batch)
    assert [r.fresh for r in result] == [False, False, True, True, True]
    assert [r.seq for r in result] == [1, 2, 3, 4, 5]
    assert count(store) == 5 and audit.verify().ok


def test_the_same_id_twice_in_one_batch_is_stored_once(store: Store, audit_paths: AuditPaths) -> None:
    audit = AuditLog(store, **audit_paths)
    one = event(1)
    result = audit.append([one, event(2), one])
    assert count(store) == 2
    assert result[0].seq == result[2].seq and result[0].fresh and not result[2].fresh


@pytest.mark.parametrize(
    "change", [{"user": "mallory"}, {"kernel_id": "k-other"}, {"event_type": "cell.end"}]
)
def test_an_id_of_another_record_is_refused_not_taken_for_a_retry(
    store: Store, audit_paths: AuditPaths, change: dict[str, str]
) -> None:
    """A sender that reuses someone else's id must not make their record disappear as a 'retry'."""
    audit = AuditLog(store, **audit_paths)
    (stored,) = audit.append([event(1)])
    forged = dataclasses.replace(event(2), event_id=str(stored.event_id), **change)
    with pytest.raises(AuditInputError, match="already the id of another record"):
        audit.append([event(3), forged])
    assert count(store) == 1  # nothing of the refused batch was written


@pytest.mark.parametrize("bad", ["short", "x" * 65, "has space in it 123", "1234567890123456;"])
def test_malformed_event_ids_are_refused(store: Store, audit_paths: AuditPaths, bad: str) -> None:
    audit = AuditLog(store, **audit_paths)
    with pytest.raises(AuditInputError, match="event_id"):
        audit.append([dataclasses.replace(event(1), event_id=bad)])
    assert count(store) == 0


def test_ids_made_by_the_log_never_look_like_card_numbers() -> None:
    """What matters is that the masker leaves them alone (a masked id would no longer match its
    record); digits spread over the id are fine, a card number is a run of them."""
    ids = {event(n).event_id for n in range(2000)}
    assert len(ids) == 2000
    masker = Masker()
    assert [i for i in ids if masker.mask_text(i)[0] != i] == []
    assert not any(re.search(r"\d{12}", i) for i in ids)


def test_verify_sees_an_edited_event_id_column(store: Store, audit_paths: AuditPaths) -> None:
    """Clearing the column would let a replay store a second copy: verify must notice."""
    audit = AuditLog(store, **audit_paths)
    audit.append([event(n) for n in range(3)])
    with store.begin() as connection:
        connection.execute(text("UPDATE audit_records SET event_id = NULL WHERE seq = 2"))
    report = audit.verify()
    assert not report.ok
    assert any("indexed columns" in problem.detail for problem in report.problems)


def _retrier(url: str, batch_ids: list[str], rounds: int) -> int:
    store = open_store(url)
    try:
        audit = AuditLog(store, signing_key_path=None, checkpoint_dir=None)
        batch = [dataclasses.replace(event(n), event_id=event_id) for n, event_id in enumerate(batch_ids)]
        fresh = 0
        for _ in range(rounds):
            fresh += sum(record.fresh for record in audit.append(batch))
        return fresh
    finally:
        store.close()


def test_retries_racing_in_many_processes_store_each_record_once(db_url: str, store: Store) -> None:
    store.engine.dispose()  # no pooled connection may cross the fork
    ids = [event(n).event_id for n in range(20)]
    with multiprocessing.get_context("fork").Pool(6) as pool:
        fresh = pool.starmap(_retrier, [(db_url, ids, 5)] * 6, chunksize=1)
    assert sum(fresh) == 20  # each record was new to exactly one append
    assert count(store) == 20
    assert AuditLog(store, signing_key_path=None, checkpoint_dir=None).verify().ok
