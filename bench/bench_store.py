"""Audit store benchmark: ingest records/s with 1 and 8 writer processes, and verify records/s.

Runs on a fresh SQLite file (WAL, synchronous=FULL) and on a private, durable PostgreSQL cluster
(fsync on; started in a temp dir, stopped at the end). One command::

    python bench/bench_store.py [--records 4000] [--batch 10] [--writers 1 8] [--backends sqlite postgresql]

Records are realistic cell-execution events (masked code and output of a few hundred bytes).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from pgcluster import PgCluster  # type: ignore[import-not-found]  # noqa: E402

from governed_server.service.audit import AuditEvent, AuditLog  # noqa: E402
from governed_server.service.store import open_store  # noqa: E402

CODE = "df = spark.sql('SELECT card_number, amount FROM payments WHERE day = :d')\ndf.head(20)\n"
OUTPUT = "card_number  amount\n" + "".join(f"************{1000 + i}  {i * 3.5:.2f}\n" for i in range(12))


def make_event(worker: int, n: int) -> AuditEvent:
    return AuditEvent(
        event_type="cell.executed",
        user=f"analyst-{worker}",
        kernel_id=f"kernel-{worker:04d}",
        session_id=f"session-{worker}",
        notebook="analysis/payments.ipynb",
        cell_id=f"cell-{n}",
        cell_hash=f"{n:064x}",
        tables=["payments"],
        code=CODE,
        output=OUTPUT,
        masking={"kinds": {"pan": 12}},
        policy_version="pci-dss-2026.1",
        details={"duration_ms": 12 + n % 50},
    )


def _writer(
    url: str, worker: int, count: int, batch: int, barrier: Any, paths: tuple[str, str]
) -> tuple[float, float]:
    store = open_store(url)
    audit = AuditLog(store, signing_key_path=paths[0], checkpoint_dir=paths[1], checkpoint_every=None)
    events = [make_event(worker, n) for n in range(count)]
    barrier.wait()
    start = time.perf_counter()
    for offset in range(0, count, batch):
        audit.append(events[offset : offset + batch])
    end = time.perf_counter()
    store.close()
    return start, end


def ingest(url: str, writers: int, total: int, batch: int, paths: tuple[str, str]) -> float:
    """Records/s for ``total`` records split over ``writers`` processes."""
    open_store(url).close()  # migrate once, outside the timing
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager:
        barrier = manager.Barrier(writers)
        per_writer = total // writers
        with context.Pool(writers) as pool:
            spans = pool.starmap(
                _writer, [(url, w, per_writer, batch, barrier, paths) for w in range(writers)], chunksize=1
            )
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    return per_writer * writers / elapsed


def verify_rate(url: str, paths: tuple[str, str]) -> tuple[float, int]:
    store = open_store(url)
    try:
        audit = AuditLog(store, signing_key_path=paths[0], checkpoint_dir=paths[1])
        audit.checkpoint()
        start = time.perf_counter()
        report = audit.verify()
        elapsed = time.perf_counter() - start
        if not report.ok:
            raise SystemExit(f"verify failed on a clean log: {report.summary()}")
        return report.total / elapsed, report.total
    finally:
        store.close()


@contextmanager
def databases(backends: Sequence[str], workdir: Path) -> Iterator[dict[str, Any]]:
    """A factory of fresh database URLs per backend."""
    cluster: PgCluster | None = None
    counter = iter(range(1_000_000))
    try:
        if "postgresql" in backends:
            cluster = PgCluster(durable=True).start()

        def fresh(backend: str) -> str:
            if backend == "sqlite":
                return f"sqlite:///{workdir / f'bench-{next(counter)}.sqlite'}"
            assert cluster is not None
            return str(cluster.create_database())

        yield {"fresh": fresh}
    finally:
        if cluster is not None:
            cluster.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=4000, help="records per ingest run (default 4000)")
    parser.add_argument("--batch", type=int, default=10, help="records per append (default 10)")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    args = parser.parse_args(argv)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="gk-bench-") as tmp, databases(args.backends, Path(tmp)) as dbs:
        workdir = Path(tmp)
        for backend in args.backends:
            last_url = ""
            for writers in args.writers:
                paths = (str(workdir / f"{backend}-{writers}.pem"), str(workdir / f"cp-{backend}-{writers}"))
                last_url = dbs["fresh"](backend)
                rate = ingest(last_url, writers, args.records, args.batch, paths)
                rows.append((backend, f"ingest, {writers} writer(s), batch {args.batch}", f"{rate:,.0f}"))
                print(f"  {rows[-1][0]:<11} {rows[-1][1]:<32} {rows[-1][2]:>10} records/s", file=sys.stderr)
            rate, total = verify_rate(last_url, paths)
            rows.append((backend, f"verify ({total} records)", f"{rate:,.0f}"))
    width = max(len(r[1]) for r in rows)
    print(f"{'backend':<11} {'operation':<{width}} {'records/s':>10}")
    print(f"{'-' * 11} {'-' * width} {'-' * 10}")
    for backend, operation, rate_text in rows:
        print(f"{backend:<11} {operation:<{width}} {rate_text:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
