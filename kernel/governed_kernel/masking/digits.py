"""Decimal digits other than ASCII ``0``-``9``: full-width (U+FF10...), Arabic-Indic (U+0660...),
Devanagari, Thai, mathematical bold (U+1D7CE...) and the others of Unicode category Nd.

Python's ``int()`` reads them and screens show them as digits, so a PAN written with them is still a
PAN. The scanner looks at such text with each of those digits replaced by its ASCII digit: one code
point for one code point, so every offset it finds is an offset in the original text. Masking then
changes the original characters. ASCII text (the usual case) costs one O(1) ``isascii`` test.
"""

from __future__ import annotations

import re
import unicodedata

WIDE_DIGIT = re.compile(r"[^\D0-9]")
"""A decimal digit that is not ASCII (``\\d`` in a ``str`` pattern is every Unicode Nd character)."""

_ASCII = "0123456789"


def ascii_digits(text: str) -> str:
    """``text`` with every non-ASCII decimal digit replaced by its ASCII digit (same length)."""
    found = set(WIDE_DIGIT.findall(text))
    if not found:
        return text
    return text.translate({ord(char): _ASCII[unicodedata.decimal(char)] for char in found})


def has_wide_digit(text: str) -> bool:
    """Whether ``text`` holds a decimal digit outside ASCII (the C accelerator has a faster one).

    Latin-1 text cannot (no character in U+0080..U+00FF is a decimal digit); encoding tells that
    at copy speed, much faster than the regular expression."""
    if text.isascii():
        return False
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return WIDE_DIGIT.search(text) is not None
    return False
