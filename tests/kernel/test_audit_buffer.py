"""The kernel's local buffer of undelivered audit records: nothing is lost, nothing read twice."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from governed_kernel.audit_buffer import AuditBuffer


def test_records_wait_in_order_until_cleared(tmp_path: Path) -> None:
    buffer = AuditBuffer(tmp_path / "sub" / "buffer.jsonl")
    assert buffer.pending() == []
    buffer.append([{"event_type": "cell.end", "n": 1}], durable=False)
    buffer.append([{"event_type": "cell.end", "n": 2}])
    assert [r["n"] for r in buffer.pending()] == [1, 2]
    assert stat.S_IMODE(buffer.path.stat().st_mode) == 0o600
    copy = buffer.pending()
    copy.append({"n": 99})
    assert [r["n"] for r in buffer.pending()] == [1, 2], "callers get a copy"
    buffer.forget_first(buffer.count)
    assert buffer.pending() == [] and AuditBuffer(buffer.path).pending() == []
    buffer.append([{"event_type": "cell.end", "n": 3}], durable=False)
    assert [r["n"] for r in AuditBuffer(buffer.path).pending()] == [3], "a new process sees only n=3"
    buffer.close()
    assert buffer.path.exists(), "undelivered records stay for the next kernel"
    buffer.forget_first(buffer.count)
    buffer.close()
    assert not buffer.path.exists(), "an empty buffer leaves no file behind"


def test_a_new_kernel_process_picks_up_what_a_killed_one_left(tmp_path: Path) -> None:
    path = tmp_path / "buffer.jsonl"
    AuditBuffer(path).append([{"event_type": "cell.end", "n": 1}])
    with path.open("a") as handle:
        handle.write('{"event_type": "cell.end", "n": 2')  # torn last line: killed mid-write
    revived = AuditBuffer(path)
    pending = revived.pending()
    assert pending[0]["n"] == 1
    assert pending[1]["event_type"] == "kernel.buffer_corrupt"
    revived.append([{"event_type": "cell.end", "n": 3}])
    assert [r.get("n") for r in revived.pending()] == [1, None, 3]
    assert [r.get("n") for r in AuditBuffer(path).pending()] == [1, None, 3], "the torn line stays alone"


def test_the_file_stays_the_durable_copy(tmp_path: Path) -> None:
    buffer = AuditBuffer(tmp_path / "buffer.jsonl")
    buffer.append([{"event_type": "cell.end", "n": 1}, {"event_type": "cell.end", "n": 2}])
    lines = buffer.path.read_text().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [1, 2]


def test_delivered_records_leave_the_front_of_the_buffer(tmp_path: Path) -> None:
    buffer = AuditBuffer(tmp_path / "buffer.jsonl")
    buffer.append([{"n": 1}, {"n": 2}, {"n": 3}], durable=False)
    buffer.forget_first(2)
    assert [r["n"] for r in buffer.pending()] == [3]
    assert [r["n"] for r in AuditBuffer(buffer.path).pending()] == [3], "the file says the same"
    buffer.forget_first(5)
    assert buffer.pending() == [] and AuditBuffer(buffer.path).pending() == []


def test_deliveries_append_marks_and_a_big_delivered_file_is_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery is one small append (no truncation per cell); the file is emptied once it is big
    and nothing waits; a kernel killed at any point leaves a file that says exactly what is left."""
    monkeypatch.setattr("governed_kernel.audit_buffer.COMPACT_AT_BYTES", 2000)
    buffer = AuditBuffer(tmp_path / "buffer.jsonl")
    sizes = []
    for n in range(60):
        buffer.append([{"event_type": "cell.end", "n": n, "pad": "x" * 40}], durable=False)
        assert [r["n"] for r in AuditBuffer(buffer.path).pending()] == [n], "what a restarted kernel sees"
        buffer.forget_first(1)
        assert AuditBuffer(buffer.path).pending() == []
        sizes.append(buffer.path.stat().st_size)
    assert sizes[1] > sizes[0], "a delivery appends a mark"
    assert max(sizes) < 2000 + 200 and min(sizes[5:]) < sizes[4], "emptied once big and delivered"
    buffer.append([{"n": "a"}, {"n": "b"}, {"n": "c"}], durable=False)
    buffer.forget_first(1)
    with buffer.path.open("a") as handle:
        handle.write('{"_delivered": 9')  # killed while writing a mark: torn, kept as evidence
    left = AuditBuffer(buffer.path).pending()
    assert [r.get("n") for r in left] == ["b", "c", None] and left[2]["event_type"] == "kernel.buffer_corrupt"


def test_the_age_of_the_oldest_waiting_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches go when the oldest record has waited long enough: its age survives partial delivery,
    restarts from zero once the buffer is empty, and records left by a dead process are overdue."""
    clock = [100.0]
    monkeypatch.setattr("governed_kernel.audit_buffer.time.monotonic", lambda: clock[0])
    buffer = AuditBuffer(tmp_path / "buffer.jsonl")
    assert (buffer.count, buffer.age()) == (0, 0.0)
    buffer.append([{"n": 1}], durable=False)
    clock[0] += 0.7
    buffer.append([{"n": 2}, {"n": 3}], durable=False)
    clock[0] += 0.5
    assert buffer.count == 3 and buffer.age() == pytest.approx(1.2)
    buffer.forget_first(1)
    assert buffer.count == 2 and buffer.age() == pytest.approx(1.2), "the rest are not younger for it"
    buffer.forget_first(2)
    assert (buffer.count, buffer.age()) == (0, 0.0)
    buffer.append([{"n": 4}], durable=False)
    clock[0] += 0.1
    assert buffer.age() == pytest.approx(0.1)
    buffer.close()
    revived = AuditBuffer(buffer.path)
    assert revived.count == 1 and revived.age() >= 100, "left by an earlier process: overdue at once"
