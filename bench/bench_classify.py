"""Classification time per cell, p50 and p99, on realistic notebook cells of 1 to 300 lines.

Run: ``python bench/bench_classify.py`` (``--cells N``, ``--policy FILE``, ``--json``). Target: p99 < 2 ms.

The corpus is generated deterministically: mostly short analysis cells (pandas, numpy, plotting,
SQL reads), a long tail of long cells up to 300 lines, and a share of risky cells (shell, processes,
cardholder SQL, network, dynamic code). Each cell is unique.

Timings per cell, reported separately (each the median of ``--repeat`` passes over all cells):

* **cold_cpu** (the target): every cache of the classifier is emptied before the cell (decisions,
  parsed statements, SQL analyses), so nothing learned from earlier cells helps; only identical
  statements inside the same cell are read once. CPU time of the process (``time.process_time_ns``):
  what the classification costs, without the time spent waiting for a core on a shared machine.
* **cold**: the same runs on the wall clock (``time.perf_counter_ns``); on a loaded machine it also
  holds preemption (a lost scheduler slice is ~4 ms here), so it is reported, not judged.
* **warm**: the same cell classified again (a re-run): the decision cache answers.
* **whole** (``--whole``): the reference path that parses and scans the whole cell, cold, for comparison.

Exit status 1 when the cold CPU-time p99 misses 2 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "kernel"))

from governed_kernel.policy import Classifier, load_policy
from governed_kernel.policy.sql import SQL_COMPILED
from governed_kernel.resources import default_policy_path

SAFE_LINES = [
    "df = pd.read_csv('data/transactions_{i}.csv', parse_dates=['ts'])",
    "df['amount_eur'] = df['amount'] * rates.loc[df['currency'], 'rate'].to_numpy()",
    "summary_{i} = df.groupby(['merchant', 'country'])['amount'].agg(['sum', 'mean', 'count'])",
    "fig, ax = plt.subplots(figsize=(10, 4))",
    "ax.plot(daily.index, daily['amount'].rolling(7).mean(), label='7-day mean')",
    "mask = (df['amount'] > threshold) & (df['status'] != 'refunded')",
    "x{i} = np.log1p(df.loc[mask, 'amount'].clip(lower=0))",
    "print(f'{{len(df):,}} rows, {{df.merchant.nunique()}} merchants')",
    "result = [row.amount for row in df.itertuples() if row.amount % 2 == 0]",
    "path = os.path.join(base_dir, 'out', f'report_{i}.csv')",
    "summary_{i}.to_csv(path)",
    "for col in ['amount', 'fee', 'net']:\n    df[col] = df[col].fillna(0).astype(float)",
    "def normalise_{i}(frame):\n    return (frame - frame.mean()) / frame.std()",
    "scores = cross_val_score(model, X_train, y_train, cv=5)",
    "# compute the fraud rate per merchant category code",
    "rates = df.pivot_table(index='mcc', columns='month', values='is_fraud', aggfunc='mean')",
    "orders = pd.read_sql('SELECT id, merchant, total FROM orders WHERE day = ?', con, params=[day])",
    "stats = pd.read_sql(f'SELECT region, count(*) FROM stores WHERE year = {{year}} GROUP BY 1', con)",
    "cur.execute('INSERT INTO report_runs (name) VALUES (?)', ('daily',))",
]
RISKY_LINES = [
    "!ls -la data/",
    "files = !find . -name '*.csv'",
    "subprocess.run(['gzip', path], check=True)",
    "cards = pd.read_sql('SELECT pan, expiry FROM customers WHERE id = ?', con, params=[cid])",
    "cur.execute('DELETE FROM card_vault WHERE created < ?', (cutoff,))",
    "requests.post(webhook_url, json=summary.to_dict())",
    "exec(compile(source, 'generated', 'exec'))",
    "getattr(os, name)('id')",
    "df.to_parquet('s3://analytics-bucket/export.parquet')",
    "get_ipython().kernel.session.key = b''",
]
HEADERS = [
    "import pandas as pd",
    "import numpy as np",
    "import matplotlib.pyplot as plt",
    "import os",
    "import subprocess",
    "import requests",
    "from sklearn.model_selection import cross_val_score",
]


def make_cell(rng: random.Random, index: int) -> str:
    roll = rng.random()
    if roll < 0.60:
        size = rng.randint(1, 12)
    elif roll < 0.90:
        size = rng.randint(13, 60)
    elif roll < 0.97:
        size = rng.randint(61, 150)
    else:
        size = rng.randint(151, 300)
    lines = rng.sample(HEADERS, k=min(len(HEADERS), rng.randint(0, 3))) if rng.random() < 0.3 else []
    risky = rng.random() < 0.25
    while len(lines) < size:
        lines.extend(rng.choice(SAFE_LINES).format(i=index * 1000 + len(lines)).split("\n"))
    if risky:
        at = rng.randrange(len(lines) + 1)
        while 0 < at < len(lines) and lines[at].startswith(" "):
            at -= 1  # not between a ``def``/``for`` line and its body: that cell would not even compile
        lines.insert(at, rng.choice(RISKY_LINES))
    return "\n".join(lines) + f"\n# cell {index}\n"


BUCKETS = (("1-12", 12), ("13-60", 60), ("61-150", 150), ("151-300", 10_000))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _time(
    cells: list[str], classifier: Classifier, *, warm: bool, whole: bool = False, repeat: int = 1
) -> tuple[list[float], list[float]]:
    """Per cell, the median of ``repeat`` timings (each one cold unless ``warm``), taken in ``repeat``
    passes over all cells: a burst of load from other processes on a shared machine then slows one
    sample of many cells instead of every sample of a few. Two clocks, read around the same call: CPU
    time of the process (the target: what the classifier costs) and wall time (which also holds the
    waits for a core on a shared machine)."""
    wall: list[list[float]] = [[] for _ in cells]
    cpu: list[list[float]] = [[] for _ in cells]
    for _ in range(repeat):
        for index, cell in enumerate(cells):
            if warm:
                classifier.classify(cell)
            else:
                classifier.cache_clear()
            start_cpu = time.process_time_ns()
            start = time.perf_counter_ns()
            if whole:
                classifier.classify_whole(cell)
            else:
                classifier.classify(cell)
            end = time.perf_counter_ns()
            end_cpu = time.process_time_ns()
            cpu[index].append((end_cpu - start_cpu) / 1e6)
            wall[index].append((end - start) / 1e6)
    return [statistics.median(found) for found in wall], [statistics.median(found) for found in cpu]


def _figures(cells: list[str], times: list[float]) -> dict[str, Any]:
    by_size: dict[str, list[float]] = {name: [] for name, _ in BUCKETS}
    for cell, elapsed in zip(cells, times, strict=True):
        lines = cell.count("\n")
        by_size[next(name for name, top in BUCKETS if lines <= top + 1)].append(elapsed)
    return {
        "p50_ms": round(percentile(times, 0.50), 3),
        "p99_ms": round(percentile(times, 0.99), 3),
        "mean_ms": round(statistics.fmean(times), 3),
        "max_ms": round(max(times), 3),
        "by_lines": {
            name: {
                "n": len(v),
                "p50_ms": round(percentile(v, 0.5), 3),
                "p99_ms": round(percentile(v, 0.99), 3),
            }
            for name, v in by_size.items()
            if v
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2000, help="number of cells (default 2000)")
    parser.add_argument("--policy", default=str(default_policy_path()), help="policy file")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--whole", action="store_true", help="also time the whole-cell reference path")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="passes over all cells, each timing cold; a cell's figure is the median of its "
        "timings (default 3)",
    )
    args = parser.parse_args()
    classifier = Classifier(load_policy(args.policy))
    rng = random.Random(args.seed)
    cells = [make_cell(rng, i) for i in range(args.cells)]
    for cell in cells[:50]:  # warm up imports (IPython transformer, sqlglot) outside the timing
        classifier.classify_uncached(cell)
    cold, cold_cpu = _time(cells, classifier, warm=False, repeat=args.repeat)
    warm, _ = _time(cells, classifier, warm=True, repeat=args.repeat)
    actions: dict[str, int] = {}
    for cell in cells:
        decision = classifier.classify(cell)
        actions[decision.action] = actions.get(decision.action, 0) + 1
    result: dict[str, Any] = {
        "cells": len(cells),
        "repeat": args.repeat,
        "target_p99_ms": 2.0,
        "target_clock": "cold_cpu (process_time)",
        "sqlglot_compiled": SQL_COMPILED,
        "decisions": actions,
        "cold": _figures(cells, cold),
        "cold_cpu": _figures(cells, cold_cpu),
        "warm": _figures(cells, warm),
    }
    if args.whole:
        whole, _ = _time(cells, classifier, warm=False, whole=True, repeat=args.repeat)
        result["whole"] = _figures(cells, whole)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"classified {len(cells)} cells (1-300 lines), median of {args.repeat} cold runs per cell, "
            f"decisions {actions}; sqlglot compiled: {SQL_COMPILED}; target: cold_cpu p99 < 2 ms"
        )
        for label in ("cold", "cold_cpu", "warm", "whole"):
            if label not in result:
                continue
            figures = result[label]
            print(
                f"{label:>8}: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
                f"mean {figures['mean_ms']} ms, max {figures['max_ms']} ms"
            )
            for bucket, by in figures["by_lines"].items():
                print(
                    f"          {bucket:>7} lines: n={by['n']:<5} p50 {by['p50_ms']} ms  "
                    f"p99 {by['p99_ms']} ms"
                )
    return 0 if result["cold_cpu"]["p99_ms"] < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
