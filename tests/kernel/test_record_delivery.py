"""What goes with a cell's start record when an earlier end record could not be sent.

The kernel-level behaviour (real kernel, real service) is in ``tests/pipeline``; here the service
client is a stand-in that can refuse a send, to reach the branch a real service rarely takes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from governed_kernel.audit_buffer import AuditBuffer
from governed_kernel.client import GovernanceUnavailable
from governed_kernel.record_delivery import RecordDelivery


class FlakyClient:
    """Refuses the first ``failures`` stream writes; records every batch written."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.written: list[list[str]] = []

    def start_audit(self, records: list[dict[str, Any]]) -> object:
        if self.failures:
            self.failures -= 1
            raise GovernanceUnavailable("the service refused the connection")
        self.written.append([r["event_type"] for r in records])
        return object()

    def finish_audit(self, handle: object) -> dict[str, Any]:
        return {"status": 201}

    async def send_audit(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        self.written.append([r["event_type"] for r in records])
        return {"status": 201}


@pytest.mark.parametrize(("batch_size", "failures", "carried"), [(1, 1, True), (64, 0, False)])
def test_an_end_record_that_failed_goes_with_the_next_start_by_default(
    tmp_path: Path, batch_size: int, failures: int, carried: bool
) -> None:
    """By default an end record is sent right after its cell; when that fails, the next cell
    carries it and does not run until it is stored. With batches a waiting end record waits for its
    batch (or the 1 s window), not for the next start record."""
    client = FlakyClient(failures=failures)
    delivery = RecordDelivery(client, AuditBuffer(tmp_path / "buffer.jsonl"), batch_size)  # type: ignore[arg-type]

    async def scenario() -> None:
        await delivery.end({"event_type": "cell.end"})  # sent and refused, or waiting for a batch
        if batch_size > 1:
            delivery._cancel_idle_flush()
        pending = await delivery.start([{"event_type": "cell.start"}])
        assert pending is not None
        pending.finish()

    asyncio.run(scenario())
    if carried:
        assert client.written == [["cell.end", "cell.start"]]
        assert delivery.buffer.count == 0, "stored with the start record: no longer waiting"
    else:
        assert client.written == [["cell.start"]]
        assert delivery.buffer.count == 1
