"""Leak suite, the tricky spellings: card numbers a reader still sees as one number although their
digits are not ASCII or are joined by invisible characters or HTML entities, and output paths off
the beaten track (the original stdout object, ``getpass`` prompts, display ids, ``__repr__`` errors).

Each output is normalised the way a reader sees it (non-ASCII digits read as ASCII, invisible
characters and entity separators dropped) before the leak check, so a PAN that only *looks* split
or foreign still counts as shown.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import pytest
from kernel_helpers import MASTERCARD, VISA, Kernel, assert_masked, grouped, strings  # type: ignore[import-not-found]

V, M = VISA, MASTERCARD
_ENTITY = re.compile(r"&#?\w+;")
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))


def in_digits(text: str, zero: int) -> str:
    return text.translate(str.maketrans("0123456789", "".join(chr(zero + d) for d in range(10))))


def as_read(text: str) -> str:
    """What a reader sees: entities and invisible characters gone, every decimal digit as ASCII."""
    text = _ENTITY.sub(" ", text).translate(_INVISIBLE)
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)


def assert_read_masked(cell_values: list[Any], shown: list[Any], pan: str, where: str) -> None:
    assert_masked(
        [as_read(t) for t in strings(cell_values)],
        pan,
        where=where,
        shown=[as_read(t) for t in strings(shown)],
    )


CASES: dict[str, tuple[str, str]] = {
    "full-width digits": (f"print('card {in_digits(V, 0xFF10)}')", V),
    "arabic-indic digits, grouped": (f"print('{in_digits(grouped(M, ' '), 0x0660)}')", M),
    "mathematical digits in a result": (f"'{in_digits(V, 0x1D7CE)}'", V),
    "mixed ascii and full-width": (f"print('{V[:8] + in_digits(V[8:], 0xFF10)}')", V),
    "zero-width spaces": (f"print('{grouped(M, chr(0x200B))}')", M),
    "soft hyphens in HTML": (f"from IPython.display import HTML\nHTML('<b>{grouped(V, '&shy;')}</b>')", V),
    "numeric entity separators": (f"from IPython.display import HTML\nHTML('{grouped(M, '&#32;')}')", M),
    "full-width split across writes": (
        f"import sys\nsys.stdout.write('{in_digits(V[:7], 0xFF10)}'); sys.stdout.flush()\n"
        f"print('{in_digits(V[7:], 0xFF10)}')",
        V,
    ),
    "the original stdout object": (
        f"import sys\nsys.__stdout__.write('raw {V}\\n'); sys.__stdout__.flush()",
        V,
    ),
    "getpass prompt": (f"import getpass\ngetpass.getpass('card {M}: ')", M),
    "display id": (f"from IPython.display import display\ndisplay('x {V}', display_id='{V}')", V),
    "error raised by __repr__": (
        f"class Card:\n    def __repr__(self):\n        raise ValueError('{M}')\nCard()",
        M,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tricky_spellings_and_paths_are_masked(kernel: Kernel, case: str) -> None:
    code, pan = CASES[case]
    cell = kernel.run(code, stdin_answer="ok" if "getpass" in code else None)
    assert cell.outputs or cell.stdin or cell.reply["content"].get("status") == "error", case
    assert_read_masked(cell.everything, cell.shown, pan, case)


def test_nothing_tricky_reaches_the_kernel_log(kernel: Kernel) -> None:
    """The original stdout is the server log in production: what the cells above wrote there is
    masked too (or never written)."""
    kernel.ok(f"import sys\nsys.__stdout__.write('log {in_digits(V, 0xFF10)} {grouped(M, chr(0x200B))}\\n')")
    raw = as_read(kernel.raw_output())
    assert V not in raw and M not in raw
