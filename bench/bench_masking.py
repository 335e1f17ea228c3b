"""Masking benchmark: this engine vs Presidio's CreditCardRecognizer, same run, ratios printed.

    python bench/bench_masking.py [--size-mb 10] [--rows 1000000,10000000] [--repeat 3] [--pure]

Needs the ``bench`` extra (presidio-analyzer) and pandas/numpy. Presidio is called directly
(``CreditCardRecognizer().analyze``), no NLP model. The two sides of each comparison run alternately
(``--repeat`` rounds for throughput, ``--display-repeat`` for DataFrame display) so that machine load
hits both alike; medians (and p90 or best) are printed and ratios are ratios of medians.
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

from masking_corpus import load_pans, number_dense_log, ordinary_text  # type: ignore[import-not-found]

from governed_kernel.masking import Masker, display_bundle, scanner
from governed_kernel.masking.scanner import native_status, prefilter_available


def interleaved(rounds: int, **funcs: Callable[[], Any]) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Run each function once per round, in turn; returns sorted times and the last results."""
    times: dict[str, list[float]] = {name: [] for name in funcs}
    results: dict[str, Any] = {}
    for _ in range(rounds):
        for name, func in funcs.items():
            start = time.perf_counter()
            results[name] = func()
            times[name].append(time.perf_counter() - start)
    for values in times.values():
        values.sort()
    return times, results


def p90(values: list[float]) -> float:
    return values[min(len(values) - 1, int(0.9 * len(values)))]


def presidio_found(results: list[Any], text: str, pans: set[str]) -> int:
    return sum(1 for r in results if "".join(ch for ch in text[r.start : r.end] if ch.isdigit()) in pans)


def throughput(size: int, repeat: int) -> None:
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer

    recognizer = CreditCardRecognizer()
    masker = Masker()
    pans = set(load_pans())
    print(f"== throughput: {size / 1e6:.0f} MB, {repeat} alternating rounds, median (best)")
    for name, (text, expected) in (
        ("number-dense log", number_dense_log(size)),
        ("ordinary text", ordinary_text(size)),
    ):

        def engine(t: str = text) -> Any:
            return masker.mask_text(t)

        def presidio(t: str = text) -> Any:
            return recognizer.analyze(t, ["CREDIT_CARD"], None)

        def find_only(t: str = text) -> Any:
            return masker.find(t)

        times, results = interleaved(repeat, engine=engine, presidio=presidio, find=find_only)
        masked, report = results["engine"]
        ours, theirs = statistics.median(times["engine"]), statistics.median(times["presidio"])
        found = statistics.median(times["find"])
        left = len(masker.find(masked))
        # The pure-Python pass without the prefilter is the reference for the prefilter and the C path.
        assert masker.find(text, prefilter=False) == results["find"], "fast path changed the findings"
        print(
            f"{name:18s} engine {ours * 1000:7.1f} ms ({times['engine'][0] * 1000:.1f}) "
            f"{len(text) / ours / 1e6:6.1f} MB/s found {report.total}/{expected}, left unmasked {left} | "
            f"presidio {theirs * 1000:7.1f} ms ({times['presidio'][0] * 1000:.1f}) true PANs found "
            f"{presidio_found(results['presidio'], text, pans)}/{expected}, results "
            f"{len(results['presidio'])} | speed-up x{theirs / ours:.1f}"
        )
        print(
            f"{'':18s} find only (no masking, like Presidio) {found * 1000:7.1f} ms "
            f"({times['find'][0] * 1000:.1f}) | speed-up x{theirs / found:.1f}"
            f"{'' if prefilter_available() else '  (numpy prefilter unavailable)'}"
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
                np.arange(rows) % 3, pd.Index(["shop 4111 1111 1111 1111", "cafe", "books"])
            ),
            "ts": pd.date_range("2024-01-01", periods=rows, freq="s"),
            "ratio": rng.random(rows, dtype=np.float32),
            "qty": (np.arange(rows) % 7).astype(np.int8),
        }
    )


def frames(row_counts: list[int], repeat: int) -> None:
    import pandas as pd

    print(
        f"== DataFrame display (8 columns; text/plain + text/html as IPython's formatter asks them: "
        f"repr() and _repr_html_(); {repeat} alternating rounds, median / p90)"
    )
    for rows in row_counts:
        frame = make_frame(rows)

        def plain_display(f: Any = frame) -> Any:
            return repr(f), f._repr_html_()

        def masked_display(f: Any = frame) -> Any:
            return display_bundle(f)

        times, results = interleaved(repeat, plain=plain_display, masked=masked_display)
        bundle, report = results["masked"]
        assert "4111 1111 1111 1111" not in bundle["text/html"]
        plain, masked = statistics.median(times["plain"]), statistics.median(times["masked"])
        print(
            f"{rows:>10,d} rows: plain pandas {plain * 1000:6.2f} / {p90(times['plain']) * 1000:6.2f} ms, "
            f"masked {masked * 1000:6.2f} / {p90(times['masked']) * 1000:6.2f} ms"
            f" -> x{masked / plain:.2f}  (masked {report.summary()})"
        )
        del frame, results
    print(f"   pandas {pd.__version__}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=float, default=10)
    parser.add_argument("--rows", default="1000000,10000000")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--display-repeat", type=int, default=300)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument(
        "--pure", action="store_true", help="measure the pure-Python fallback (no C accelerator)"
    )
    args = parser.parse_args()
    if args.pure:
        scanner._native = None
    print(f"C accelerator (_panscan): {'off (--pure)' if args.pure else native_status()}")
    throughput(int(args.size_mb * 1e6), args.repeat)
    latency(args.samples)
    frames([int(r) for r in args.rows.split(",") if r], args.display_repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
