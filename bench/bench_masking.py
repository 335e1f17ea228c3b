"""Masking benchmark: this engine vs Presidio's CreditCardRecognizer, same run, ratios printed.

    python bench/bench_masking.py [--size-mb 10] [--rows 1000000,10000000] [--repeat 3]

Needs the ``bench`` extra (presidio-analyzer) and pandas/numpy. Presidio is called directly
(``CreditCardRecognizer().analyze``), no NLP model. Times are the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from masking_corpus import load_pans, number_dense_log, ordinary_text

from governed_kernel.masking import Masker, display_bundle


def best_of(repeat: int, func: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def presidio_found(results: list[Any], text: str, pans: set[str]) -> int:
    return sum(1 for r in results if "".join(ch for ch in text[r.start : r.end] if ch.isdigit()) in pans)


def throughput(size: int, repeat: int) -> None:
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer

    recognizer = CreditCardRecognizer()
    masker = Masker()
    pans = set(load_pans())
    print(f"== throughput: {size / 1e6:.0f} MB, best of {repeat}")
    for name, (text, expected) in (
        ("number-dense log", number_dense_log(size)),
        ("ordinary text", ordinary_text(size)),
    ):
        ours, (masked, report) = best_of(repeat, lambda t=text: masker.mask_text(t))
        theirs, results = best_of(repeat, lambda t=text: recognizer.analyze(t, ["CREDIT_CARD"], None))
        left = len(masker.find(masked))
        print(
            f"{name:18s} engine {ours * 1000:8.1f} ms ({len(text) / ours / 1e6:6.1f} MB/s) "
            f"found {report.total}/{expected}, left unmasked {left} | presidio {theirs * 1000:8.1f} ms "
            f"({len(text) / theirs / 1e6:6.1f} MB/s) true PANs found {presidio_found(results, text, pans)}"
            f"/{expected}, results {len(results)} | speed-up x{theirs / ours:.1f}"
        )


def latency(samples: int) -> None:
    masker = Masker()
    print(f"== latency per 1 KB output ({samples} samples each)")
    rng = random.Random(3)
    for name, (text, _) in (
        ("number-dense log", number_dense_log(2_000_000)),
        ("ordinary text", ordinary_text(2_000_000)),
    ):
        times = []
        for _ in range(samples):
            start = rng.randrange(len(text) - 1024)
            chunk = text[start : start + 1024]
            t0 = time.perf_counter_ns()
            masker.mask_text(chunk)
            times.append((time.perf_counter_ns() - t0) / 1000)
        times.sort()
        print(
            f"{name:18s} median {statistics.median(times):6.1f} us  p90 {times[int(0.9 * samples)]:6.1f} us"
            f"  p99 {times[int(0.99 * samples)]:6.1f} us"
        )


def make_frame(rows: int) -> Any:
    """rows x 8 columns, built with numpy (no per-row Python): PANs as int64, ids, floats, CVVs..."""
    import numpy as np
    import pandas as pd

    pans = np.array([int(p) for p in load_pans() if len(p) <= 18], dtype=np.int64)
    rng = np.random.default_rng(5)
    return pd.DataFrame(
        {
            "card_number": pans[np.arange(rows) % len(pans)],
            "order_id": np.arange(rows, dtype=np.int64) + 10**9,
            "amount": rng.random(rows, dtype=np.float32) * 1000,
            "cvv": (np.arange(rows) % 900 + 100).astype(np.int16),
            "merchant": pd.Categorical.from_codes(
                np.arange(rows) % 3, ["shop 4111 1111 1111 1111", "cafe", "books"]
            ),
            "ts": pd.date_range("2024-01-01", periods=rows, freq="s"),
            "ratio": rng.random(rows, dtype=np.float32),
            "qty": (np.arange(rows) % 7).astype(np.int8),
        }
    )


def frames(row_counts: list[int], repeat: int) -> None:
    import pandas as pd

    print(f"== DataFrame display (8 columns, best of {repeat}; text/plain + text/html)")
    for rows in row_counts:
        frame = make_frame(rows)

        def plain(f: Any = frame) -> tuple[str, str]:
            return repr(f), f._repr_html_()

        def masked(f: Any = frame) -> Any:
            return display_bundle(f)

        plain_time, _ = best_of(repeat, plain)
        masked_time, (bundle, report) = best_of(repeat, masked)
        assert "4111 1111 1111 1111" not in bundle["text/html"]
        print(
            f"{rows:>10,d} rows: plain pandas {plain_time * 1000:7.1f} ms, "
            f"masked {masked_time * 1000:7.1f} ms"
            f" -> x{masked_time / plain_time:.2f}  (masked {report.summary()})"
        )
        del frame
    print(f"   pandas {pd.__version__}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=float, default=10)
    parser.add_argument("--rows", default="1000000,10000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    throughput(int(args.size_mb * 1e6), args.repeat)
    latency(args.samples)
    frames([int(r) for r in args.rows.split(",") if r], args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
