"""Governed kernel overhead: nbclient runs of a 200-cell notebook of cheap cells on ``governed-python``
vs ``python3`` (plain ipykernel), in the same run. Target: wall-time ratio ≤ 1.3 (aim 1.1).

Also per-cell time (nbclient's execute_input → execute_reply timestamps) p50/p99 for both kernels;
their difference is the governance overhead per cell (classification, the audit records' round
trip, masking of every message, the runtime guard). The governed kernel talks to a real governance
service (``jupyter governance serve`` on SQLite). One command::

    python bench/bench_kernel.py [--cells 200] [--repeat 5] [--with-http] [--with-batch N]

Each round runs both kernels back to back, in turn first (ABBA), and the ratio is taken per round:
the median of those ratios is the figure (a shared machine's speed drifts between rounds, much less
within one). Both kernels import from bytecode, as a wheel install has it: the governed packages are
byte-compiled first when they run from a source tree.

``--with-http`` adds a third kernel in the same alternation: ``governed-python`` with its audit records
sent over HTTP (``GOVERNED_AUDIT_STREAM=0``) instead of the audit stream (WebSocket). ``--with-batch N``
adds ``governed-python`` with end records sent in batches of up to N (``GOVERNED_AUDIT_BATCH=N``).
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from governance_service import GovernanceService, write_test_policy  # type: ignore[import-not-found]  # noqa: E402


def cheap_cells(count: int) -> list[str]:
    kinds = [
        "x{b} = {b} * 2",
        "x{b}",
        "print('row', {b}, x{b})",
        "values = [v * v for v in range(50)]\nsum(values) + {b}",
        "d{b} = {{'id': {b}, 'amount': {b} * 1.5}}\nd{b}",
    ]
    return [kinds[i % len(kinds)].format(b=i // len(kinds)) for i in range(count)]


Run = tuple[float, list[float]]
"""One notebook run: wall time, per-cell times."""


def run_once(kernel: str, cells: list[str], env: dict[str, str]) -> Run:
    notebook = new_notebook(cells=[new_code_cell(source) for source in cells])
    client = NotebookClient(notebook, kernel_name=kernel, timeout=120, record_timing=True)
    started = time.perf_counter()
    client.execute(env=env)
    wall = time.perf_counter() - started
    per_cell = []
    for cell in notebook.cells:
        timing: dict[str, Any] = cell.metadata.get("execution", {})
        begin, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if begin and end:
            parse = datetime.fromisoformat
            per_cell.append(
                (parse(end.replace("Z", "+00:00")) - parse(begin.replace("Z", "+00:00"))).total_seconds()
            )
    return wall, per_cell


def compile_sources() -> None:
    """Byte-compile the governed packages when they run from a source tree (an editable install):
    a wheel install ships bytecode, and plain ipykernel's packages have it too."""
    import governed_kernel
    import governed_server

    for package in (governed_kernel, governed_server):
        compileall.compile_dir(Path(package.__file__).parent, quiet=1)


def round_ratios(kernel: list[Run], plain: list[Run]) -> list[float]:
    """Wall-time ratio to plain ipykernel, round by round."""
    return [wall / plain_wall for (wall, _), (plain_wall, _) in zip(kernel, plain, strict=True)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--with-http", action="store_true", help="also run the governed kernel over HTTP")
    parser.add_argument(
        "--with-batch", type=int, metavar="N", help="also run it with end records in batches of up to N"
    )
    parser.add_argument(
        "--with-guard",
        action="store_true",
        help="then measure the server's inbound guard per cell over the websocket (bench_inbound.py)",
    )
    args = parser.parse_args()
    cells = cheap_cells(args.cells)
    compile_sources()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        service = GovernanceService(root=root, policy_path=write_test_policy(root / "policy.yaml")).start()
        try:
            results: dict[str, list[Run]] = {"python3": [], "governed-python": []}
            if args.with_http:
                results["governed (HTTP)"] = []
            batched = f"governed (batch {args.with_batch})"
            if args.with_batch:
                results[batched] = []
            plain_env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNED_")}
            envs = {
                "python3": ("python3", plain_env),
                "governed-python": ("governed-python", {**plain_env, **service.kernel_env("alice")}),
                "governed (HTTP)": (
                    "governed-python",
                    {**plain_env, **service.kernel_env("alice"), "GOVERNED_AUDIT_STREAM": "0"},
                ),
                batched: (
                    "governed-python",
                    {**plain_env, **service.kernel_env("alice", GOVERNED_AUDIT_BATCH=str(args.with_batch))},
                ),
            }
            for round_number in range(args.repeat):  # both kernels per round, in turn first
                order = list(results) if round_number % 2 == 0 else list(reversed(results))
                for name in order:
                    kernel, env = envs[name]
                    results[name].append(run_once(kernel, cells, env))
        finally:
            service.stop()
    print(f"nbclient, {args.cells} cheap cells, median of {args.repeat} alternating runs")
    walls = {kernel: statistics.median(w for w, _ in runs) for kernel, runs in results.items()}
    cells_all = {kernel: [c for _, per in runs for c in per] for kernel, runs in results.items()}
    for kernel in results:
        per = cells_all[kernel]
        print(
            f"  {kernel:<20} wall {walls[kernel]:6.2f} s   per cell p50 {percentile(per, 0.5) * 1000:6.2f} ms"
            f"   p99 {percentile(per, 0.99) * 1000:6.2f} ms"
        )
    if args.with_http:
        http_ratio = statistics.median(round_ratios(results["governed (HTTP)"], results["python3"]))
        print(f"  wall-time ratio governed over HTTP/plain: {http_ratio:.2f}")
    if args.with_batch:
        batch_ratio = statistics.median(round_ratios(results[batched], results["python3"]))
        print(f"  wall-time ratio governed with batches of {args.with_batch}/plain: {batch_ratio:.2f}")
    ratios = round_ratios(results["governed-python"], results["python3"])
    ratio = statistics.median(ratios)
    overhead50 = percentile(cells_all["governed-python"], 0.5) - percentile(cells_all["python3"], 0.5)
    overhead99 = percentile(cells_all["governed-python"], 0.99) - percentile(cells_all["python3"], 0.99)
    print(
        f"  wall-time ratio governed/plain: {ratio:.2f} (median of {len(ratios)} rounds, "
        f"{min(ratios):.2f}-{max(ratios):.2f}; target <= 1.3, aim 1.1)"
    )
    print(f"  governance overhead per cell: p50 {overhead50 * 1000:.2f} ms, p99 {overhead99 * 1000:.2f} ms")
    if args.with_guard:
        inbound = Path(__file__).with_name("bench_inbound.py")
        command = [sys.executable, str(inbound), "--cells", str(args.cells), "--repeat", str(args.repeat)]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
