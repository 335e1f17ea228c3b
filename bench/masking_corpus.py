"""Synthetic corpora for the masking benchmark: a number-dense log, ordinary text, 1 KB outputs.

Deterministic (seeded) so that runs compare. The PANs come from the public test-card list.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
CARDS_CSV = HERE.parent / "tests" / "data" / "test-cards.csv"

WORDS = [
    "the",
    "request",
    "completed",
    "after",
    "retry",
    "while",
    "the",
    "worker",
    "waited",
    "for",
    "the",
    "upstream",
    "service",
    "and",
    "cache",
    "warmed",
    "slowly",
    "before",
    "merchant",
    "settlement",
    "batches",
    "were",
    "reconciled",
    "with",
    "ledger",
    "entries",
    "analyst",
    "notebook",
    "cell",
    "output",
    "summary",
    "customer",
    "segment",
    "region",
    "quarterly",
    "revenue",
    "model",
]


def load_pans() -> list[str]:
    with CARDS_CSV.open(newline="") as handle:
        return [row["pan"] for row in csv.DictReader(handle)]


def natural_groups(pan: str) -> list[str]:
    """How cards print their number: 4-4-4-4, 4-6-5 (15), 4-6-4 (14), 4-4-5 (13), 4-4-4-4-3 (19)..."""
    sizes = {12: (4, 4, 4), 13: (4, 4, 5), 14: (4, 6, 4), 15: (4, 6, 5), 17: (4, 4, 4, 5), 18: (4, 4, 4, 6)}
    cut = sizes.get(len(pan), (4,) * 4 + (3,))
    groups, start = [], 0
    for size in cut:
        groups.append(pan[start : start + size])
        start += size
    return [g for g in groups if g]


def layout(pan: str, rng: random.Random) -> str:
    """One PAN in one of several real-world layouts."""
    kind = rng.randrange(8)
    groups = natural_groups(pan)
    if kind == 0:
        return pan
    if kind == 1:
        return " ".join(groups)
    if kind == 2:
        return "-".join(groups)
    if kind == 3:
        return ".".join(groups)
    if kind == 4:
        return "\u00a0".join(groups)
    if kind == 5:
        return f'"card_number": "{pan}"'
    if kind == 6:
        return f"card={pan}&exp=1226"
    return f"cc_{pan}_x"


def number_dense_line(rng: random.Random) -> str:
    """A log line full of look-alike numbers: ids, floats, timestamps, IPs, epoch millis."""
    return (
        f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
        f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999999):06d}Z "
        f"INFO order={rng.randint(10**8, 10**10)} user={rng.randint(1, 10**6)} "
        f"amount={rng.uniform(0, 5000):.2f} latency={rng.random() * 100:.6f} "
        f"ip=10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)} "
        f"ts={rng.randint(1_600_000_000_000, 1_800_000_000_000)} seq={rng.randint(0, 99999)} "
        f"ratio={rng.random():.17f}"
    )


def number_dense_log(size: int, seed: int = 7) -> tuple[str, int]:
    """About ``size`` characters of log; ~5% of lines hold one PAN. Returns (text, number of PANs)."""
    rng = random.Random(seed)
    pans = load_pans()
    lines: list[str] = []
    total = 0
    count = 0
    while total < size:
        line = number_dense_line(rng)
        if rng.random() < 0.05:
            line += " payment " + layout(rng.choice(pans), rng)
            count += 1
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n", count


def ordinary_text(size: int, seed: int = 11) -> tuple[str, int]:
    """Prose-like output with few numbers; ~1% of lines hold one PAN."""
    rng = random.Random(seed)
    pans = load_pans()
    lines: list[str] = []
    total = 0
    count = 0
    while total < size:
        words = rng.choices(WORDS, k=rng.randint(8, 16))
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), str(rng.randint(1, 2030)))
        if rng.random() < 0.01:
            words.append(layout(rng.choice(pans), rng))
            count += 1
        line = " ".join(words)
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n", count
