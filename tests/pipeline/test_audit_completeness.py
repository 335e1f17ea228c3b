"""Every cell leaves its trace: start and end records in order, a start record even if the kernel dies."""

from __future__ import annotations

import time
from typing import Any

from pipeline_helpers import GovernedKernel, cell_records, unique  # type: ignore[import-not-found]


def test_every_cell_has_start_then_end_and_the_chain_verifies(governance_service: Any) -> None:
    kernel = GovernedKernel(governance_service.kernel_env("alice"))
    markers = [unique(f"cell{n}-") for n in range(5)]
    try:
        for n, marker in enumerate(markers):
            code = f"print({marker!r})" if n != 2 else f"raise RuntimeError({marker!r})"
            kernel.execute(code)
    finally:
        kernel.shutdown()
    seqs: list[int] = []
    for n, marker in enumerate(markers):
        records = cell_records(governance_service, marker, until=2)
        assert [r["event_type"] for r in records] == ["cell.start", "cell.end"], marker
        assert records[1]["outcome"] == ("failure" if n == 2 else "success")
        seqs.extend(r["seq"] for r in records)
    assert seqs == sorted(seqs), "records of successive cells must be in execution order"
    report = governance_service.as_user("dave").get("audit/verify").json()
    assert report["ok"] is True, report


def test_a_kernel_killed_mid_cell_leaves_its_start_record(governance_service: Any) -> None:
    kernel = GovernedKernel(governance_service.kernel_env("alice"))
    marker = unique("killed-")
    try:
        kernel.client.execute(f"import time\n{marker!r}\ntime.sleep(120)")
        deadline = time.monotonic() + 60
        while not cell_records(governance_service, marker):
            assert time.monotonic() < deadline, "no start record"
            time.sleep(0.2)
        kernel.manager.shutdown_kernel(now=True)  # SIGKILL: no chance to record the end
    finally:
        kernel.client.stop_channels()
        kernel.manager.cleanup_resources()
    records = cell_records(governance_service, marker)
    assert [r["event_type"] for r in records] == ["cell.start"]
