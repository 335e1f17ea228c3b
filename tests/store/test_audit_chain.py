"""The audit chain on real SQLite and PostgreSQL: append, query, checkpoints, and every kind of tampering."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from store_helpers import (  # type: ignore[import-not-found]
    AuditPaths,
    event,
    fill,
    rehash_from,
    renumber,
    row,
    set_head,
    sql,
)

from governed_server.audit_records import record_hash
from governed_server.service.audit import AuditError, AuditInputError, AuditLog, StoredRecord
from governed_server.service.audit_checkpoints import CHECKPOINT_FILE, load_or_create_key, sign
from governed_server.service.store import GENESIS_HASH, Store

PAN = "4111111111111111"
AMEX = "3782 822463 10005"


def first(audit: AuditLog) -> tuple[int, str]:
    report = audit.verify()
    assert not report.ok, report.summary()
    problem = report.problems[0]
    return problem.seq, problem.kind


# -- appending and reading --------------------------------------------------------------------------


def test_append_then_verify_is_intact(audit: AuditLog) -> None:
    records = audit.append([event(1), event(2)])
    assert [r.seq for r in records] == [1, 2]
    assert records[0].prev_hash == GENESIS_HASH and records[1].prev_hash == records[0].hash
    assert records[0].time.tzinfo is not None
    fill(audit, 18)
    checkpoint = audit.checkpoint()
    assert checkpoint is not None and checkpoint.seq == 20
    report = audit.verify()
    assert report.ok, report.problems
    assert (report.total, report.valid, report.last_checkpoint) == (20, 20, (20, checkpoint.signed_at))
    assert report.summary().startswith("20/20 records valid, chain intact to checkpoint 20 signed at ")
    assert report.summary().endswith("Z")


def test_empty_log_verifies_and_has_no_checkpoint(audit: AuditLog) -> None:
    assert audit.checkpoint() is None
    report = audit.verify()
    assert report.ok and report.total == 0
    assert report.summary() == "0/0 records valid, chain intact (no signed checkpoint yet)"


def test_record_fields_time_and_query_filters(audit: AuditLog) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    audit.append(
        [
            event(
                1,
                user="alice",
                claimed_user="ci-bot",
                client_addr="10.0.0.1",
                server="srv-1",
                session_id="s-1",
                cell_hash="a" * 64,
                tables=["cards"],
                approval_id="req-1",
                policy_version="pci-1",
                masking={"kinds": {"pan": 2}},
                outcome="failure",
            )
        ]
    )
    audit.append([event(2, user="bob", event_type="approval.decided", kernel_id="k-2", notebook="b.ipynb")])
    (stored,) = audit.query(user="alice")
    assert before <= stored.time <= datetime.now(timezone.utc)
    assert stored.claimed_user == "ci-bot" and stored.outcome == "failure"
    assert stored.origin == {
        "client_addr": "10.0.0.1",
        "server": "srv-1",
        "kernel_id": "k-1",
        "session_id": "s-1",
        "notebook": "work/cards.ipynb",
    }
    assert stored.resource == {"cell_id": "cell-1", "cell_hash": "a" * 64, "tables": ["cards"]}
    assert stored.data["approval_id"] == "req-1" and stored.data["policy_version"] == "pci-1"
    assert stored.data["masking"] == {"kinds": {"pan": 2}}
    assert [r.seq for r in audit.query(user="ci-bot")] == [1]
    assert [r.seq for r in audit.query(event_type="approval.decided")] == [2]
    assert [r.seq for r in audit.query(kernel_id="k-2")] == [2]
    assert [r.seq for r in audit.query(notebook="b.ipynb")] == [2]
    assert [r.seq for r in audit.query(after_seq=1)] == [2]
    assert [r.seq for r in audit.query(limit=1)] == [1]
    assert audit.query(since=datetime.now(timezone.utc) + timedelta(minutes=1)) == []
    assert len(audit.query(since=before, until=datetime.now(timezone.utc) + timedelta(seconds=1))) == 2
    with pytest.raises(AuditInputError):
        audit.query(limit=0)
    json.dumps(stored.to_dict())


def test_restart_keeps_records_and_continues_the_chain(db_url: str, audit_paths: AuditPaths) -> None:
    first_store = Store.open(db_url)
    fill(AuditLog(first_store, **audit_paths), 7)
    AuditLog(first_store, **audit_paths).checkpoint()
    first_store.close()
    reopened = Store.open(db_url)
    try:
        audit = AuditLog(reopened, **audit_paths)
        assert len(audit.query(limit=100)) == 7
        (record,) = audit.append([event(8)])
        assert record.seq == 8
        assert audit.verify().ok
    finally:
        reopened.close()


def test_joined_transaction_rolls_back_with_the_caller(audit: AuditLog, store: Store) -> None:
    audit.append([event(1)])
    with pytest.raises(RuntimeError), store.begin() as connection:
        audit.append([event(2)], connection=connection)
        raise RuntimeError("the approval transition failed")
    with store.begin() as connection:
        (record,) = audit.append([event(3)], connection=connection)
    assert record.seq == 2
    assert [r.data["details"]["n"] for r in audit.query()] == [1, 3]
    assert audit.verify().ok


def test_automatic_checkpoints_every_n_records(store: Store, audit_paths: AuditPaths) -> None:
    audit = AuditLog(store, checkpoint_every=10, **audit_paths)
    fill(audit, 25, batch=3)
    seqs = [c.seq for c in audit.checkpoints()]
    assert seqs and all(b - a >= 10 for a, b in zip([0, *seqs], seqs, strict=False)), seqs
    assert max(seqs) >= 20
    lines = (audit_paths["checkpoint_dir"] / CHECKPOINT_FILE).read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == seqs
    assert audit.verify().ok


def test_signing_key_is_private_and_public_key_beside_checkpoints(
    audit: AuditLog, audit_paths: AuditPaths
) -> None:
    audit.append([event(1)])
    audit.checkpoint()
    assert audit_paths["signing_key_path"].stat().st_mode & 0o777 == 0o600
    assert list(audit_paths["checkpoint_dir"].glob("audit-key-*.pub"))


# -- never a PAN, never bad input ------------------------------------------------------------------


def test_ingest_masks_card_numbers_in_every_field(audit: AuditLog, store: Store) -> None:
    audit.append(
        [
            event(
                1,
                code=f"pay('{PAN}')",
                output=f"card {AMEX} ok",
                notebook=f"n-{PAN}.ipynb",
                details={"card_number": "5555555555554444", "note": f"see {PAN}", PAN: 1},
                tables=[f"t{PAN}"],
            )
        ]
    )
    with store.read() as connection:
        dump = "\n".join(str(tuple(r)) for r in connection.execute(text("SELECT * FROM audit_records")))
    digits = "".join(ch for ch in dump if ch.isdigit() or ch in "\n '\"")
    for pan in (PAN, AMEX.replace(" ", ""), "5555555555554444"):
        assert pan not in dump.replace(" ", "") and pan not in digits.replace(" ", "")
    (record,) = audit.query()
    assert record.data["code"] == "pay('************1111')"
    assert record.data["ingest_masked"]["kinds"]["pan"] >= 4
    assert audit.verify().ok


def test_output_is_capped_and_hashed_in_full(store: Store, audit_paths: AuditPaths) -> None:
    audit = AuditLog(store, output_cap=100, **audit_paths)
    output = "x" * 1000
    (record,) = audit.append([event(1, output=output)])
    assert len(record.data["output"]) == 100 and record.data["output_truncated"] is True
    assert record.data["output_size"] == 1000
    assert record.data["output_sha256"] == hashlib.sha256(output.encode()).hexdigest()


@pytest.mark.parametrize(
    "bad",
    [
        {"user": ""},
        {"outcome": "maybe"},
        {"event_type": "Bad Type"},
        {"cell_hash": "not-a-hash"},
        {"kernel_id": "k" * 65},
        {"masking": {"pan": "two"}},
        {"details": {"x": float("nan")}},
        {"details": {"x": [float("-inf")]}},
        {"details": {"x": object()}},
        {"code": "s = '\ud800'"},  # a lone surrogate cannot be stored as UTF-8
    ],
)
def test_malformed_events_are_refused_and_nothing_is_written(audit: AuditLog, bad: dict[str, object]) -> None:
    with pytest.raises(AuditInputError):
        audit.append([event(1), event(2, **bad)])
    assert audit.query() == []


def test_unwritable_store_raises_instead_of_losing_records(audit: AuditLog, store: Store) -> None:
    sql(store, "DROP TABLE audit_records")
    with pytest.raises(AuditError):
        audit.append([event(1)])


# -- tampering -------------------------------------------------------------------------------------


def _edit_body(store: Store, seq: int, old: str, new: str) -> None:
    body = row(store, seq).body
    assert old in body
    sql(store, "UPDATE audit_records SET body = :b WHERE seq = :s", b=body.replace(old, new), s=seq)


def test_modified_field_is_found(audit: AuditLog, store: Store) -> None:
    fill(audit, 10)
    _edit_body(store, 5, '"out 4"', '"out X"')
    assert first(audit) == (5, "modified")


def test_modified_indexed_column_is_found(audit: AuditLog, store: Store) -> None:
    fill(audit, 10)
    sql(store, "UPDATE audit_records SET \"user\" = 'mallory' WHERE seq = 6")
    assert first(audit) == (6, "modified")


def test_modified_and_rehashed_record_is_found(audit: AuditLog, store: Store) -> None:
    fill(audit, 10)
    _edit_body(store, 4, '"alice"', '"alicf"')
    edited = row(store, 4)
    digest = record_hash(4, edited.prev_hash, edited.body)
    sql(store, "UPDATE audit_records SET \"user\" = 'alicf', hash = :h WHERE seq = 4", h=digest)
    assert first(audit) == (4, "modified")


def test_rehashed_suffix_is_found_by_the_signed_checkpoint(audit: AuditLog, store: Store) -> None:
    fill(audit, 10)
    audit.checkpoint()
    _edit_body(store, 7, '"out 6"', '"out X"')
    rehash_from(store, 7)
    seq, kind = first(audit)
    assert kind == "modified" and seq <= 7


def test_deleted_middle_record_is_found(audit: AuditLog, store: Store) -> None:
    fill(audit, 10)
    sql(store, "DELETE FROM audit_records WHERE seq = 5")
    assert first(audit) == (5, "deleted")
    assert audit.verify().valid == 9  # every record present is authentic; one is missing


def test_deleted_middle_record_with_renumbering_is_found(audit: AuditLog, store: Store) -> None:
    fill(audit, 10)
    sql(store, "DELETE FROM audit_records WHERE seq = 5")
    renumber(store, 6, -1)
    set_head(store, 9)
    report = audit.verify()
    assert (report.problems[0].seq, report.problems[0].kind) == (5, "deleted")
    assert len(report.problems) == 1, report.problems


def test_deleted_last_record_is_found_by_the_head(audit: AuditLog, store: Store) -> None:
    fill(audit, 10)
    sql(store, "DELETE FROM audit_records WHERE seq = 10")
    assert first(audit) == (10, "deleted")


def test_deleted_last_record_and_rewound_head_is_found_by_the_checkpoint(
    audit: AuditLog, store: Store, audit_paths: AuditPaths
) -> None:
    fill(audit, 10)
    audit.checkpoint()
    sql(store, "DELETE FROM audit_records WHERE seq = 10")
    set_head(store, 9)
    assert first(audit) == (10, "deleted")
    # Even when the attacker also deletes the checkpoint rows, the file outside the store proves it.
    sql(store, "DELETE FROM audit_checkpoints")
    assert first(audit) == (10, "deleted")
    # Without the outside copy, nothing is left to prove it: that is why the files exist.
    (audit_paths["checkpoint_dir"] / CHECKPOINT_FILE).unlink()
    assert audit.verify().ok


def test_truncation_is_found_by_the_checkpoint(audit: AuditLog, store: Store) -> None:
    fill(audit, 10)
    audit.checkpoint()
    sql(store, "DELETE FROM audit_records WHERE seq > 6")
    set_head(store, 6)
    sql(store, "DELETE FROM audit_checkpoints")
    report = audit.verify()
    assert (report.problems[0].seq, report.problems[0].kind) == (7, "truncated")
    assert "1/1" not in report.summary() and report.summary().startswith(
        "6/6 records valid, first bad record 7"
    )


def test_forged_record_inserted_in_the_middle_is_found(audit: AuditLog, store: Store) -> None:
    fill(audit, 10)
    audit.checkpoint()
    renumber(store, 5, +1)
    genuine = row(store, 6)
    forged_body = genuine.body.replace('"out 4"', '"forged"')
    prev = row(store, 4).hash
    forged_hash = record_hash(5, prev, forged_body)
    sql(
        store,
        'INSERT INTO audit_records (seq, event_time, "user", claimed_user, event_type, outcome, kernel_id, '
        'notebook, body, prev_hash, hash) SELECT 5, event_time, "user", claimed_user, event_type, outcome, '
        "kernel_id, notebook, :b, :p, :h FROM audit_records WHERE seq = 6",
        b=forged_body,
        p=prev,
        h=forged_hash,
    )
    set_head(store, 11)
    report = audit.verify()
    assert (report.problems[0].seq, report.problems[0].kind) == (5, "inserted"), report.problems
    assert len(report.problems) == 1, report.problems
    assert report.valid == 10


def test_forged_record_appended_after_the_head_is_found(audit: AuditLog, store: Store) -> None:
    fill(audit, 10)
    sql(
        store,
        'INSERT INTO audit_records (seq, event_time, "user", claimed_user, event_type, outcome, kernel_id, '
        'notebook, body, prev_hash, hash) SELECT 11, event_time, "user", claimed_user, event_type, outcome, '
        "kernel_id, notebook, body, hash, hash FROM audit_records WHERE seq = 10",
    )
    assert first(audit) == (11, "inserted")


def test_swapped_records_are_found(audit: AuditLog, store: Store) -> None:
    fill(audit, 10)
    sql(store, "UPDATE audit_records SET seq = -1 WHERE seq = 5")
    sql(store, "UPDATE audit_records SET seq = 5 WHERE seq = 6")
    sql(store, "UPDATE audit_records SET seq = 6 WHERE seq = -1")
    report = audit.verify()
    assert (report.problems[0].seq, report.problems[0].kind) == (5, "reordered")
    assert len(report.problems) == 1, report.problems


def test_forged_checkpoint_signature_is_found(audit: AuditLog, store: Store) -> None:
    fill(audit, 10)
    audit.checkpoint()
    signature = row_checkpoint_signature(store)
    forged = ("0" if signature[0] != "0" else "1") + signature[1:]
    sql(store, "UPDATE audit_checkpoints SET signature = :s", s=forged)
    assert first(audit) == (10, "bad-signature")


def test_checkpoint_signed_by_an_unknown_key_is_found(
    audit: AuditLog, tmp_path: Path, audit_paths: AuditPaths
) -> None:
    fill(audit, 10)
    head_seq, head_hash = audit.head()
    rogue = sign(load_or_create_key(tmp_path / "rogue.pem"), head_seq, head_hash, datetime.now(timezone.utc))
    audit_paths["checkpoint_dir"].mkdir()
    with audit_paths["checkpoint_dir"].joinpath(CHECKPOINT_FILE).open("a") as handle:
        handle.write(json.dumps(rogue.to_dict()) + "\n")
    assert first(audit) == (10, "bad-signature")


def row_checkpoint_signature(store: Store) -> str:
    with store.read() as connection:
        return str(connection.execute(text("SELECT signature FROM audit_checkpoints")).scalar_one())


def test_stored_record_round_trip(audit: AuditLog) -> None:
    (record,) = audit.append([event(1)])
    assert isinstance(record, StoredRecord)
    assert audit.query()[0] == record


def test_sqlite_fast_append_stores_what_the_sqlalchemy_path_stores(tmp_path: Path) -> None:
    """On SQLite a plain append runs on the driver's cursor; an append joined to a caller's
    transaction goes through SQLAlchemy. Both must store the same values, byte for byte, in the
    same column types (a different time format would break range queries and reports)."""
    store = Store.open(f"sqlite:///{tmp_path / 'g.sqlite'}")
    try:
        audit = AuditLog(store, signing_key_path=None, checkpoint_dir=None)
        audit.append([event(1, claimed_user="ci", tables=["cards"], details={"t": (1, 2)})])
        head_after_fast = rows(store, "SELECT typeof(updated_at), length(updated_at) FROM audit_head")
        with store.begin() as connection:
            audit.append([event(1, claimed_user="ci", tables=["cards"], details={"t": (1, 2)})],
                         connection=connection)  # fmt: skip
        head_after_core = rows(store, "SELECT typeof(updated_at), length(updated_at) FROM audit_head")
        columns = "typeof(event_time), length(event_time), user, claimed_user, event_type, outcome, kernel_id"
        query = f"SELECT {columns}, substr(event_time, 11, 1) FROM audit_records ORDER BY seq"
        fast, core = rows(store, query)
        assert fast == core and fast[-1] == " "
        assert head_after_fast == head_after_core
        bodies = [json.loads(str(b)) for (b,) in rows(store, "SELECT body FROM audit_records ORDER BY seq")]
        ids = [body.pop("event_id") for body in bodies]
        assert ids[0] != ids[1] and all(ids)
        for body in bodies:
            body.pop("time")
        assert bodies[0] == bodies[1]
        stored_ids = rows(store, "SELECT event_id FROM audit_records ORDER BY seq")
        assert [value for (value,) in stored_ids] == ids
        assert audit.verify().ok
        now = datetime.now(timezone.utc)
        assert len(audit.query(since=now - timedelta(minutes=1), until=now + timedelta(minutes=1))) == 2
        assert audit.query(since=now + timedelta(seconds=1)) == []
    finally:
        store.close()


def rows(store: Store, statement: str) -> list[tuple[object, ...]]:
    with store.read() as connection:
        return [tuple(r) for r in connection.execute(text(statement)).all()]
