"""Shared data for the masking tests: the public test-card list and layouts of one PAN."""

from __future__ import annotations

import csv
from pathlib import Path

CARDS_CSV = Path(__file__).resolve().parent.parent / "data" / "test-cards.csv"


def load_cards() -> list[tuple[str, str]]:
    with CARDS_CSV.open(newline="") as handle:
        return [(row["pan"], row["brand"]) for row in csv.DictReader(handle)]


def groups(pan: str) -> list[str]:
    sizes = {12: (4, 4, 4), 13: (4, 4, 5), 14: (4, 6, 4), 15: (4, 6, 5), 17: (4, 4, 4, 5), 18: (4, 4, 4, 6)}
    out, start = [], 0
    for size in sizes.get(len(pan), (4, 4, 4, 4, 3)):
        if pan[start : start + size]:
            out.append(pan[start : start + size])
        start += size
    return out


def layouts(pan: str) -> dict[str, str]:
    """Every layout from the issue, each holding ``pan`` once."""
    g = groups(pan)
    return {
        "contiguous": f"card {pan} end",
        "spaces": " ".join(g),
        "dashes": "-".join(g),
        "spaced dash": " - ".join(g),
        "dots": ".".join(g),
        "tabs": "\t".join(g),
        "nbsp": "\u00a0".join(g),
        "thin space": "\u2009".join(g),
        "narrow nbsp": "\u202f".join(g),
        "&nbsp;": "&nbsp;".join(g),
        "&#8201;": "&#8201;".join(g),
        "zero-width space": "\u200b".join(g),
        "soft hyphen": "\u00ad".join(g),
        "word joiner": "\u2060".join(g),
        "&shy;": "&shy;".join(g),
        "&ZeroWidthSpace;": "&ZeroWidthSpace;".join(g),
        "&#x200B;": "&#x200B;".join(g),
        "letters": f"abc{pan}xyz",
        "underscores": f"cc_{pan}_x",
        "json string": f'{{"card": "{pan}"}}',
        "json number": f'{{"card": {pan}}}',
        "csv": f"1,{pan},2024-01-01,12.50",
        "url": f"https://pay.example/charge?card={pan}&amount=10",
        "url path": f"/v1/cards/{pan}/charges",
        "html table": f"<table><tr><td>{pan}</td><td>x</td></tr></table>",
        "float": f"{pan}.0",
        "quoted": f"'{pan}'",
        "parenthesised": f"({' '.join(g)})",
        "newline after": f"{pan}\nnext",
    }
