"""End records in batches (``GOVERNED_AUDIT_BATCH``): complete, bounded in time, never lost.

By default every end record is stored before the next cell's start record (the order tests in
``test_audit_completeness.py``). With batches, end records of back-to-back cells travel together;
these tests check what still holds then: every cell gets both records, start before end; a batch
waits at most the window while cells keep running and at most the idle delay once they stop; records
buffered when the kernel is killed reach the service from the restarted kernel; and a bad setting
refuses cells instead of being ignored.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline_helpers import TIMEOUT, GovernedKernel, cell_records, unique  # type: ignore[import-not-found]


def run_queued(kernel: GovernedKernel, sources: list[str]) -> list[dict[str, Any]]:
    """Send every cell at once (no pause between them, as "Run All" or nbclient) and wait for the replies."""
    ids = [kernel.client.execute(source) for source in sources]
    replies: dict[str, dict[str, Any]] = {}
    while len(replies) < len(ids):
        reply = kernel.client.get_shell_msg(timeout=TIMEOUT)
        replies[reply["parent_header"]["msg_id"]] = reply["content"]
    return [replies[msg_id] for msg_id in ids]


def queue_then_block(kernel: GovernedKernel, service: Any, sources: list[str], blocker: str) -> None:
    """Queue ``sources``, then a cell that sleeps (marked ``blocker``); return once it has started."""
    for source in sources:
        kernel.client.execute(source)
    kernel.client.execute(f"import time\n{blocker!r}\ntime.sleep(120)")
    deadline = time.monotonic() + 30
    while not cell_records(service, blocker):
        assert time.monotonic() < deadline, "the blocking cell did not start"
        time.sleep(0.1)


def seqs(records: list[dict[str, Any]]) -> dict[str, int]:
    return {r["event_type"]: r["seq"] for r in records}


def test_batched_end_records_are_all_stored_and_each_cell_starts_before_it_ends(
    governance_service: Any,
) -> None:
    kernel = GovernedKernel(governance_service.kernel_env("alice", GOVERNED_AUDIT_BATCH="4"))
    markers = [unique(f"batched{n}-") for n in range(8)]
    try:
        replies = run_queued(kernel, [f"print({marker!r})" for marker in markers])
        assert [reply["status"] for reply in replies] == ["ok"] * len(markers)
    finally:
        kernel.shutdown()
    cells = [seqs(cell_records(governance_service, marker, until=2)) for marker in markers]
    assert all(set(cell) == {"cell.start", "cell.end"} for cell in cells), cells
    assert all(cell["cell.start"] < cell["cell.end"] for cell in cells)
    # Batched: some end record was stored after the next cell's start (by default none is).
    assert any(cells[n]["cell.end"] > cells[n + 1]["cell.start"] for n in range(len(cells) - 1)), cells
    # The chain holds (checkpoints are left out: other tests share this store and sign with other keys).
    report = governance_service.as_user("dave").get("audit/verify").json()
    assert report["total"] == report["valid"] == report["head_seq"], report


def test_a_batch_waits_at_most_the_window_while_cells_keep_running(governance_service: Any) -> None:
    """Four cells of 0.4 s, then a long one: the window (1 s) sends the first cells' end records
    while the long cell still runs, although the batch (200 records) is far from full."""
    kernel = GovernedKernel(governance_service.kernel_env("alice", GOVERNED_AUDIT_BATCH="200"))
    short = [unique(f"short{n}-") for n in range(4)]
    long = unique("long-")
    try:
        sleepers = [f"import time\n{marker!r}\ntime.sleep(0.4)" for marker in short]
        queue_then_block(kernel, governance_service, sleepers, long)
        early = [cell_records(governance_service, marker, until=2) for marker in short[:3]]
        assert [[r["event_type"] for r in records] for records in early] == [["cell.start", "cell.end"]] * 3
        assert [r["event_type"] for r in cell_records(governance_service, long)] == ["cell.start"], (
            "the long cell is still running"
        )
        kernel.manager.interrupt_kernel()
    finally:
        kernel.shutdown()


def test_waiting_end_records_leave_once_the_kernel_is_idle(governance_service: Any) -> None:
    kernel = GovernedKernel(governance_service.kernel_env("alice", GOVERNED_AUDIT_BATCH="200"))
    marker = unique("idle-")
    try:
        assert kernel.execute(f"print({marker!r})").status == "ok"
        # The kernel stays up and idle: no later cell, no shutdown flushes the record.
        records = cell_records(governance_service, marker, until=2)
        assert [r["event_type"] for r in records] == ["cell.start", "cell.end"]
        assert kernel.manager.is_alive()
    finally:
        kernel.shutdown()


def test_end_records_buffered_when_the_kernel_is_killed_come_from_the_restarted_kernel(
    governance_service: Any,
) -> None:
    kernel = GovernedKernel(governance_service.kernel_env("alice", GOVERNED_AUDIT_BATCH="200"))
    quick = [unique(f"quick{n}-") for n in range(3)]
    stuck = unique("stuck-")
    try:
        queue_then_block(kernel, governance_service, [f"print({marker!r})" for marker in quick], stuck)
        connection = Path(kernel.manager.connection_file)
        buffer = connection.with_name(f"governed-audit-{connection.stem}.jsonl")
        assert buffer.read_text().count('"cell.end"') >= 1, "the buffer lives beside the connection file"
        kernel.manager.restart_kernel(now=True)  # SIGKILL, then the same command and connection file
        kernel.client.wait_for_ready(timeout=TIMEOUT)
        waiting = [cell_records(governance_service, marker) for marker in quick]
        assert any(len(records) == 1 for records in waiting), "nothing was buffered: the test proves nothing"
        assert kernel.execute("1 + 1").status == "ok"
        for marker in quick:
            records = cell_records(governance_service, marker, until=2)
            assert [r["event_type"] for r in records] == ["cell.start", "cell.end"], marker
        assert [r["event_type"] for r in cell_records(governance_service, stuck)] == ["cell.start"]
    finally:
        kernel.shutdown()


def test_a_bad_batch_setting_refuses_cells_and_says_how_to_fix_it(governance_service: Any) -> None:
    for value in ("lots", "0", "-3", "100000"):
        kernel = GovernedKernel(governance_service.kernel_env("alice", GOVERNED_AUDIT_BATCH=value))
        try:
            reply = kernel.execute("print('never')").reply
        finally:
            kernel.shutdown()
        assert reply["status"] == "error"
        assert "GOVERNED_AUDIT_BATCH" in reply["evalue"] and repr(value) in reply["evalue"], reply["evalue"]


def test_records_sent_again_by_a_restarted_kernel_are_stored_once(governance_service: Any) -> None:
    """The kernel died after the service stored its end records but before it noted that in its
    buffer: the restarted kernel sends them again, and each is stored once (their event ids)."""
    kernel = GovernedKernel(governance_service.kernel_env("alice"))
    markers = [unique(f"again{n}-") for n in range(3)]
    try:
        for marker in markers:
            assert kernel.execute(f"print({marker!r})").status == "ok"
        connection = Path(kernel.manager.connection_file)
        buffer = connection.with_name(f"governed-audit-{connection.stem}.jsonl")
        lines = buffer.read_text().splitlines()
        kept = [line for line in lines if '"_delivered"' not in line]
        assert len(kept) < len(lines) and any(m in "".join(kept) for m in markers), "nothing to send again"
        # SIGKILL, keeping the connection file (as a restart does): nothing rewrites the buffer
        kernel.manager.shutdown_kernel(now=True, restart=True)
        buffer.write_text("".join(line + "\n" for line in kept))  # as if the marks never got written
        kernel.manager.start_kernel(**kernel.manager._launch_args)
        kernel.client.wait_for_ready(timeout=TIMEOUT)
        assert kernel.execute("1 + 1").status == "ok"  # the buffer goes out before this cell's start
    finally:
        kernel.shutdown()
    for marker in markers:
        records = cell_records(governance_service, marker, until=2)
        assert [r["event_type"] for r in records] == ["cell.start", "cell.end"], (marker, records)
        assert len({r["event_id"] for r in records}) == 2
