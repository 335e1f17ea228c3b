"""Mask JSON-like data (dicts, lists, strings, numbers) recursively: keys and values.

Keys name columns too: a value under a CVV/PIN/track-named key is masked entirely, under a
PAN-named key its digits are masked even when the Luhn check fails. A number that is a PAN
becomes a masked string (a number cannot hold ``*``).

That reading of keys is for data (a frame's columns, a user's JSON). The project's own records
(audit records, approval requests, rule findings) have keys that are field names: ``span`` is a
position in a cell, not a column ending in "pan". Those are masked with ``by_name=False``: every
string and every card-sized number is still masked as text, and key names trigger nothing, so the
numbers the project makes (positions, counts, sizes) come back as they went in.
"""

from __future__ import annotations

from typing import Any

from governed_kernel.masking.cards import MIN_PAN
from governed_kernel.masking.report import MaskReport
from governed_kernel.masking.text import Masker, MaskingError, default_masker

MAX_DEPTH = 200


def mask_json(
    data: Any, masker: Masker | None = None, report: MaskReport | None = None, *, by_name: bool = True
) -> tuple[Any, MaskReport]:
    """A masked copy of ``data`` (the input is not modified) and what was masked. ``by_name=False``:
    keys are field names of the project's own records, not data columns (see the module)."""
    masker = masker or default_masker()
    report = report if report is not None else MaskReport()
    return _mask(data, masker, None, report, 0, by_name), report


def needs_masking(data: Any, masker: Masker | None = None, *, by_name: bool = True) -> bool:
    """Whether :func:`mask_json` would change ``data``, with one scan instead of one per string.

    Every key and string is joined by newlines (a newline never sits inside a card number or a
    track, and no rule reads across one), so a single ``find`` sees exactly what scanning them one
    by one would. Anything the fast walk does not decide (a key with a column rule, a number in
    card range, a type JSON masking refuses, deep nesting) answers True: :func:`mask_json` then
    does the full work and raises where it would have.
    """
    masker = masker or default_masker()
    texts: list[str] = []
    if not _collect(data, masker, texts, 0, by_name):
        return True
    return bool(texts) and bool(masker.find("\n".join(texts)))


def _collect(value: Any, masker: Masker, texts: list[str], depth: int, by_name: bool) -> bool:
    """Gather the strings of ``value`` into ``texts``; False when only the full walk can decide.

    Written for speed (it runs on every audit record): exact types first, leaves inline.
    """
    kind = type(value)
    # Exact types first (the hot path); dict subclasses (nbformat's NotebookNode) are dicts too.
    if kind is dict or (kind is not list and kind is not tuple and isinstance(value, dict)):
        if depth >= MAX_DEPTH:
            return False
        rule = masker.config.column_rule
        for key, item in value.items():
            if type(key) is not str or (by_name and rule(key) is not None):
                return False
            if len(key) >= MIN_PAN:
                texts.append(key)
            if type(item) is str:  # the most common leaf, inline
                if len(item) >= MIN_PAN:
                    texts.append(item)
            elif not _collect_leaf(item, texts) and not _collect(item, masker, texts, depth + 1, by_name):
                return False
        return True
    if kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            return False
        return all(
            _collect_leaf(item, texts) or _collect(item, masker, texts, depth + 1, by_name) for item in value
        )
    # A plain leaf; anything else (subclasses, other types, a number in card range) is left to
    # the full walk, which masks or refuses it exactly as it always did.
    return _collect_leaf(value, texts)


def _collect_leaf(value: Any, texts: list[str]) -> bool:
    """True when ``value`` is a plain leaf that needs nothing more (strings gathered)."""
    kind = type(value)
    if kind is str:
        if len(value) >= MIN_PAN:  # a shorter string cannot hold a card number or a track
            texts.append(value)
        return True
    if value is None or kind is bool:
        return True
    if kind is int or kind is float:
        return _number_is_safe(value)
    return False


def _number_is_safe(value: float) -> bool:
    """A number that cannot be a card number (those become masked strings: the full walk)."""
    if type(value) is int:
        return not 10**11 <= abs(value) < 10**19
    return not (value.is_integer() and 1e11 <= abs(value) < 1e19)


def _mask(value: Any, masker: Masker, rule: str | None, report: MaskReport, depth: int, by_name: bool) -> Any:
    if depth > MAX_DEPTH:
        raise MaskingError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            key_rule = masker.config.column_rule(key) if by_name and isinstance(key, str) else None
            new_key = masker.mask_text(key, report)[0] if isinstance(key, str) else key
            out[new_key] = _mask(item, masker, key_rule or rule, report, depth + 1, by_name)
        return out
    if isinstance(value, (list, tuple)):
        return [_mask(item, masker, rule, report, depth + 1, by_name) for item in value]
    if isinstance(value, str):
        if rule is not None:
            return masker.mask_by_name(value, rule, report)
        return masker.mask_text(value, report)[0]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if rule is None and not 10**11 <= abs(value) < 10**19:
            return value
        text = str(value)
    elif isinstance(value, float):
        if rule is None and not (value.is_integer() and 1e11 <= abs(value) < 1e19):
            return value
        text = str(int(value)) if value.is_integer() else repr(value)
    else:
        raise MaskingError(f"cannot mask JSON value of type {type(value).__name__}")
    masked = masker.mask_by_name(text, rule, report) if rule else masker.mask_text(text, report)[0]
    return value if masked == text else masked
