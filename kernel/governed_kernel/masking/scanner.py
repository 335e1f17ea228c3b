"""Find PANs and magnetic-stripe tracks in text, fast, without regex backtracking over every number.

Two stages (measured in ``bench/bench_masking.py``; see docs/masking.md):

1. *Prefilter in C.* The text is encoded to one byte per character (Latin-1; anything else becomes
   ``?``, so offsets stay equal to ``str`` indices) and translated so that digits and separator
   characters become ``D``. A PAN has at least 12 digits, so it lies inside a run of at least 12
   ``D`` bytes; a literal-prefix regex finds those runs at memory speed and nothing else is looked at.
2. *Exact check in Python, per run.* Split the run into digit groups joined by real separators,
   try the natural groupings, and accept a candidate only when a brand's IIN range and length fit
   and the Luhn digit is right. Track 1/2 data around a PAN is taken whole.

This module is the reference. When the optional C accelerator ``_panscan`` is built, :func:`find`
uses it for stage 1 and the common runs and calls back here for every other run (same findings;
see "The C accelerator" in docs/masking.md).
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from governed_kernel.masking.cards import MAX_PAN, MIN_PAN, BrandTable, luhn_valid
from governed_kernel.masking.digits import ascii_digits, has_wide_digit

INVISIBLE_CHARS = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
"""Characters that render as nothing (soft hyphen, zero-width space/joiners, word joiner, BOM): digit
groups joined by them look like one number, so they separate groups like a space does."""
SEPARATOR_CHARS = " \t.-\u00a0\u2007\u2009\u202f\u2002\u2003\u2010\u2011\u2012\u2013" + INVISIBLE_CHARS
"""Characters that may separate digit groups inside one PAN (space, tab, dot, dashes, NBSP, thin...)."""

_ENTITY = (
    r"&(?:nbsp|thinsp|ensp|emsp|numsp|ndash|hyphen|dash|NonBreakingSpace|shy|ZeroWidthSpace|zwnj|zwj|"
    r"NoBreak|#0*160|#0*8201|#0*8194|#0*8195|#0*8199|#0*8239|#0*32|#0*45|#0*8208|#0*8209|#0*8211|"
    r"#0*173|#0*8203|#0*8204|#0*8205|#0*8288|#0*65279|"
    r"#[xX]0*[aA]0|#[xX]0*2009|#[xX]0*2002|#[xX]0*2003|#[xX]0*2007|#[xX]0*202[fF]|#[xX]0*20|"
    r"#[xX]0*2[dD]|#[xX]0*201[0-3]|#[xX]0*[aA][dD]|#[xX]0*200[bBcCdD]|#[xX]0*2060|#[xX]0*[fF][eE][fF][fF]);"
)
ENTITY_RE = re.compile(_ENTITY)
"""HTML entities that render as a separator (``&nbsp;``, ``&#8201;``...)."""

_SPACES = "[ \u00a0\u2009\u202f]"
SEPARATOR_PATTERN = (
    rf"(?:{_SPACES}?[-\u2010-\u2013]{_SPACES}?"
    rf"|[ \t.\u00a0\u2007\u2009\u202f\u2002\u2003{INVISIBLE_CHARS}]|{_ENTITY})"
)
"""One separator between two digit groups of a PAN (regular expression source)."""
_SEPARATOR_RE = re.compile(SEPARATOR_PATTERN)
_GROUP_RE = re.compile(rf"{_ENTITY}|[0-9]+")
_FOUR_DIGITS = re.compile(r"[0-9]{4}")
_LAYOUT = re.compile(
    r"[0-9]{4,6}(?:(?P<sep>[ \t\-\u00a0\u2009\u202f])[0-9]{3,6}(?:(?P=sep)[0-9]{3,6})*(?:(?P=sep)[0-9]{2})?"
    r"|(?:\.[0-9]{3,6}){2,}(?:\.[0-9]{2})?)"
).fullmatch
"""A whole run that is one natural grouped layout with a single kind of separator: 4-4-4-4, 4-6-5,
4-4-4-4-3, 4-4-4-2, or dotted with at least three groups (two dotted groups are a decimal)."""

_TRACK1_TAIL = re.compile(r"\^[^^\r\n]{0,26}\^(?:[0-9]{4}|\^)[0-9A-Za-z]{0,79}")
_TRACK2_TAIL = re.compile(r"=(?:[0-9]{4}|=)[0-9]{0,32}")
_EXPONENT = re.compile(r"[eE]\+?([0-9]{1,2})(?![0-9])")
_CANDIDATE = re.compile(rb"DDDD[Ds]{8,}")
"""Stage 1 on the class bytes: four digits, then at least eight more digit/separator characters.

Every PAN layout holds a group of at least four digits followed by at least eight more digits (and
maybe separators), so the leftmost such match in a run of digit/separator characters finds every run
that can hold a PAN. Starting with a literal lets the regex engine skip prose at memory speed:
spaces between words never start an attempt (they did when the pattern started with a class)."""

_TABLE = bytearray(b"x" * 256)
for _c in "0123456789":
    _TABLE[ord(_c)] = ord("D")
for _c in "?" + "".join(ch for ch in SEPARATOR_CHARS if ord(ch) < 256):
    _TABLE[ord(_c)] = ord("s")
TRANSLATE = bytes(_TABLE)
"""Byte map for stage 1: digits to ``D``; Latin-1 separators and ``?`` (stand-in for any wider char,
e.g. a thin space) to ``s``; everything else to ``x`` (never inside a run)."""

CHUNK = 32_768
"""Stage 1 works on pieces of about this many characters (cut at a newline or another character that
can never be inside a run or an entity): the piece, its bytes and their classes stay in the CPU
cache, which measured ~2x faster than one pass over a 10 MB string."""

_BREAK = re.compile(
    r"[^0-9A-Za-z#&;?" + re.escape("".join(sorted(set(SEPARATOR_CHARS)))) + "\u0100-\U0010ffff]"
)
"""A character that is neither in a run nor in an entity: a safe place to cut a piece. Characters
above U+00FF are never cuts: stage 1 sees them as ``?`` (a separator class), so they can be inside a
run."""

_TRACK_MARKS = ("^", "=")
"""A PAN followed by one of these may start track data (``_single`` decides)."""

_EDGE = SEPARATOR_CHARS + "?"
"""Characters trimmed from both ends of a stage-1 run: a PAN starts and ends with a digit."""


class Finding(NamedTuple):
    """One thing to mask: ``text[start:end]``. Digits are kept out of ``repr`` on purpose.

    A named tuple (immutable, compares by value): about 3x cheaper to build than a frozen dataclass,
    which matters at one per PAN."""

    start: int
    end: int
    kind: str  # "pan", "track1" or "track2"
    brand: str | None
    pan: str
    """The PAN's digits (for the keyed token); may be longer than the digits shown (float renderings)."""

    def __repr__(self) -> str:
        return f"Finding(start={self.start}, end={self.end}, kind={self.kind!r}, brand={self.brand!r})"


def _mapped(text: str) -> bytes:
    """Stage 1 input: one byte per character, ``D`` for digits, ``s`` for separators (entities too)."""
    data = text.encode("latin-1", "replace")
    mapped = data.translate(TRANSLATE)
    if b"&" in data:
        patched = bytearray(mapped)
        for entity in ENTITY_RE.finditer(text):
            start, end = entity.span()
            patched[start:end] = b"s" * (end - start)
        mapped = bytes(patched)
    return mapped


def candidate_runs(text: str, begin: int = 0, finish: int | None = None) -> Iterator[tuple[int, int]]:
    """Spans of ``text`` that may hold a PAN (stage 1): maximal runs of digit/separator characters
    with four digits in a row followed by at least eight more run characters.

    ``begin``/``finish`` limit the pass to ``text[begin:finish]``; both must be 0/``len(text)`` or sit
    right after/at a character that :data:`_BREAK` matches, so that the runs are the same as in a
    pass over the whole text (this is how the prefilter's regions are scanned)."""
    length = len(text) if finish is None else finish
    position = begin
    while position < length:
        stop = position + CHUNK
        if stop >= length:
            stop = length
        else:
            cut = text.find("\n", stop, min(stop + CHUNK, length))
            if cut < 0:
                match = _BREAK.search(text, stop, length)
                cut = match.start() if match else length
            stop = cut
        mapped = _mapped(text[position:stop])
        rfind = mapped.rfind
        for run in _CANDIDATE.finditer(mapped):
            # The match starts at the run's first "DDDD"; the run itself may start earlier.
            yield position + rfind(b"x", 0, run.start()) + 1, position + run.end()
        position = stop


# -- optional vectorised prefilter (numpy) -------------------------------------------------------
#
# Every PAN layout that ``find`` accepts starts with a group of at least four digits; later groups
# have at least three digits except a last group of two, so a PAN's first twelve digits lie in a
# span S of at most four groups joined by three separators. A separator holds at most 18 characters
# that are not ASCII digits (``&NonBreakingSpace;``; a numeric entity has at most five, ``&#x;`` and
# its hex letters, however many zeros pad it), so S holds at most 54 non-digits. The prefilter counts
# ASCII digits per block of 32 characters with numpy and keeps every window of four blocks (128
# characters) with at least 12 digits. The window starting at S's first block covers at least the
# first 97 characters of S: all of S when S is that short, else at least 97 - 54 = 43 digits of it.
# Either way it holds 12 digits and is kept. (Contiguous PANs, tracks and float renderings are
# denser.) Each kept window is widened to characters that can never be inside a stage-1 run
# (:data:`_BREAK`), so stage 1 and the exact check see exactly the runs they would see in a pass
# over the whole text; a run outside every window cannot be or hold a PAN.

GATE_BLOCK = 32
GATE_WINDOW = 4
"""Blocks per window; ``GATE_BLOCK * (GATE_WINDOW - 1) + 1`` (97) must be >= 12 + 54 (see above)."""
GATE_MIN_TEXT = 16_384
"""Shorter texts skip the prefilter: numpy's per-call overhead is more than the whole pure pass."""
GATE_MAX_COVER = 0.5
"""When the kept windows cover more than this share of the text (number-dense logs), the pure
stage 1 runs over the whole text: it is as fast and skips the per-region bookkeeping."""
_GATE_CHUNK = 524_288

# numpy is optional (present whenever pandas is); without it the pure pass is used. It is imported
# on the first long text, not with this module: a tenth of a second of every kernel's start.
_np: Any = None
_HAVE_NUMPY: bool | None = None
"""None until the first long text asks; then whether numpy >= 2.0 could be imported."""


def _numpy_loaded() -> bool:
    global _np, _HAVE_NUMPY
    if _HAVE_NUMPY is None:
        try:
            import numpy
        except ImportError:  # pragma: no cover - exercised by the pure-path tests via prefilter=False
            _HAVE_NUMPY = False
        else:
            _np = numpy
            _HAVE_NUMPY = hasattr(numpy, "bitwise_count")  # numpy >= 2.0
    return _HAVE_NUMPY


def prefilter_available() -> bool:
    """True when the numpy prefilter can be used (numpy >= 2.0 importable)."""
    return _numpy_loaded()


# -- optional C accelerator ----------------------------------------------------------------------
#
# ``_panscan`` (kernel/governed_kernel/masking/_panscan.c, built by hatch_build.py) does stage 1 and
# the two inline fast paths of ``_find_runs`` in C and hands every other run back to ``_slow_run``;
# ``Masker.apply`` uses its ``mask`` to build the masked text with one copy. Same results as the
# pure path (tests/masking/test_masking_native.py). Not used when GOVERNED_MASKING_NATIVE=0, when it
# is not built (no compiler: the wheel is then pure Python), or when it was built from another
# version of the C source (an in-place build left behind after an edit: run ``make native``).

NATIVE_ABI = 2
_NATIVE_SOURCE = Path(__file__).with_name("_panscan.c")


def _load_native() -> tuple[ModuleType | None, str]:
    if os.environ.get("GOVERNED_MASKING_NATIVE", "1") == "0":
        return None, "disabled (GOVERNED_MASKING_NATIVE=0)"
    try:
        module = importlib.import_module("governed_kernel.masking._panscan")
    except ImportError as error:
        return None, f"not built ({error}); run `make native`"
    if getattr(module, "ABI_VERSION", None) != NATIVE_ABI:
        return None, f"ABI {getattr(module, 'ABI_VERSION', None)} != {NATIVE_ABI}: rebuild with `make native`"
    if _NATIVE_SOURCE.exists():  # a source tree (editable install): the build must match the source
        current = hashlib.sha256(_NATIVE_SOURCE.read_bytes()).hexdigest()
        if current != module.SOURCE_HASH:
            return None, "stale build (the C source changed): run `make native`"
    return module, f"in use ({Path(module.__file__ or '').name})"


_native, _native_status = _load_native()
_has_wide_digit = has_wide_digit if _native is None else _native.has_wide_digit


def native_status() -> str:
    """Whether the C accelerator is used, and if not, why (for diagnostics and tests)."""
    return _native_status


def native_module() -> ModuleType | None:
    """The loaded C accelerator, or None (pure Python)."""
    return _native


def _digit_blocks(text: str) -> Any:
    """ASCII digits per block of :data:`GATE_BLOCK` characters (uint8 array, 3 zero blocks appended),
    computed on 512 KiB pieces of Latin-1 bytes (reused buffers; fastest size measured)."""
    np = _np
    length = len(text)
    blocks = -(-length // GATE_BLOCK)
    counts = np.zeros(blocks + GATE_WINDOW - 1, dtype=np.uint8)
    size = min(_GATE_CHUNK, blocks * GATE_BLOCK)
    shifted = np.empty(size, dtype=np.uint8)
    digits = np.zeros(size, dtype=np.bool_)
    for position in range(0, length, _GATE_CHUNK):
        data = text[position : position + _GATE_CHUNK].encode("latin-1", "replace")  # 1 byte per char
        n = len(data)
        np.subtract(np.frombuffer(data, dtype=np.uint8), 48, out=shifted[:n])
        np.less(shifted[:n], 10, out=digits[:n])
        padded = -(-n // GATE_BLOCK) * GATE_BLOCK
        digits[n:padded] = False
        first = position // GATE_BLOCK
        counts[first : first + padded // GATE_BLOCK] = np.bitwise_count(
            np.packbits(digits[:padded]).view(np.uint32)
        )
    return counts


def _cut_before(text: str, position: int) -> int:
    """An index <= ``position`` right after a :data:`_BREAK` character (or 0): the start of the
    line when it is near (one C-level ``rfind``), else the nearest cut found scanning backwards."""
    newline = text.rfind("\n", max(0, position - 4096), position)
    if newline >= 0:
        return newline + 1
    while position > 0:
        low = max(0, position - 1024)
        last = -1
        for match in _BREAK.finditer(text, low, position):
            last = match.end()
        if last >= 0:
            return last
        position = low
    return 0


def _cut_after(text: str, position: int) -> int:
    """An index >= ``position`` of a :data:`_BREAK` character (or ``len(text)``): the end of the line
    when it is near, else the nearest cut."""
    newline = text.find("\n", position, position + 4096)
    if newline >= 0:
        return newline
    match = _BREAK.search(text, position)
    return match.start() if match else len(text)


def prefilter_regions(text: str) -> list[tuple[int, int]] | None:
    """Regions of ``text`` that hold every run that can hold a PAN, or None to scan everything
    (no numpy, short text, or most of the text is digit-dense)."""
    length = len(text)
    if length < GATE_MIN_TEXT or not _numpy_loaded():
        return None
    np = _np
    counts = _digit_blocks(text)
    windows = counts[:-3] + counts[1:-2] + counts[2:-1] + counts[3:]
    kept = np.flatnonzero(windows >= 12)
    if not len(kept):
        return []
    # Merge overlapping windows: a new region starts where the next kept window is past the last.
    starts = np.flatnonzero(np.diff(kept) > GATE_WINDOW) + 1
    lows = kept[np.r_[0, starts]]
    highs = kept[np.r_[starts - 1, len(kept) - 1]] + GATE_WINDOW
    if int((highs - lows).sum()) * GATE_BLOCK > GATE_MAX_COVER * length:
        return None
    # Tighten each region to its first and last block that holds a digit: a PAN's first digit is in
    # a block with digits inside the kept window that starts at its own block, hence inside the
    # region; widening to cuts below then takes its whole run (and the lines around usually not).
    # (Each region starts and ends with a kept window, which has digits in one of its four blocks.)
    lows = lows + np.argmax(np.stack([counts[lows + i] for i in range(GATE_WINDOW)]) > 0, axis=0)
    tails = np.stack([counts[highs - 1 - i] for i in range(GATE_WINDOW)]) > 0
    highs = highs - np.argmax(tails, axis=0)
    regions: list[tuple[int, int]] = []
    rfind = text.rfind
    find = text.find
    last = -1  # end of the last region
    for low, high in zip((lows * GATE_BLOCK).tolist(), (highs * GATE_BLOCK).tolist(), strict=True):
        # Widen to whole lines (a newline is never inside a run; inlined _cut_before/_cut_after),
        # or to other break characters when no newline is near.
        if low > last:
            cut = rfind("\n", low - 4096 if low > 4096 else 0, low)
            low = cut + 1 if cut >= 0 else _cut_before(text, low)
        else:
            low = last
        if high > length:
            high = length
        cut = find("\n", high, high + 4096)
        high = cut if cut >= 0 else _cut_after(text, high)
        if low <= last:
            regions[-1] = (regions[-1][0], max(high, last))
        else:
            regions.append((low, high))
        last = regions[-1][1]
    return regions


def gated_runs(text: str, prefilter: bool | None = None) -> list[tuple[int, int]]:
    """Stage 1 runs of ``text``: through the numpy prefilter when it applies (``prefilter`` None or
    True), else one pure pass. Both give the same runs wherever a PAN can be.

    The prefilter's regions are joined by newlines (a newline is never inside a run) and stage 1
    runs once over that short text; run offsets are then mapped back to ``text``."""
    regions = None if prefilter is False else prefilter_regions(text)
    if regions is None:
        return list(candidate_runs(text))
    if not regions:
        return []
    joined = "\n".join([text[low:high] for low, high in regions])
    # Region i starts at starts[i] in ``joined``; add shift[i] to map an offset back to ``text``.
    starts: list[int] = []
    shifts: list[int] = []
    position = 0
    for low, high in regions:
        starts.append(position)
        shifts.append(low - position)
        position += high - low + 1
    runs: list[tuple[int, int]] = []
    index = 0
    last = len(starts) - 1
    for start, end in candidate_runs(joined):
        while index < last and starts[index + 1] <= start:
            index += 1
        shift = shifts[index]
        runs.append((start + shift, end + shift))
    return runs


def find(text: str, table: BrandTable, prefilter: bool | None = None) -> list[Finding]:
    """All PANs and tracks in ``text``, in order, not overlapping.

    Uses the C accelerator (:mod:`governed_kernel.masking._panscan`) when it is built and enabled
    (see :func:`native_status`); it gives the same findings as the pure-Python path. ``prefilter``
    given (True or False) forces the pure-Python path, with (True) or without (False) the numpy
    prefilter: tests compare the three. Non-ASCII decimal digits count as digits (``digits``)."""
    if not text.isascii() and _has_wide_digit(text):
        text = ascii_digits(text)
    if _native is not None and prefilter is None:
        return _native.find(text, table.native_tables(), _slow_run, table, Finding)  # type: ignore[no-any-return]
    found: list[Finding] = []
    _find_runs(text, gated_runs(text, prefilter), table, found)
    return found


def _slow_run(text: str, start: int, end: int, table: BrandTable, found: list[Finding]) -> None:
    """The pure-Python check of one stage-1 run, for the runs the C accelerator leaves to Python."""
    _find_runs(text, ((start, end),), table, found)


def _find_runs(text: str, runs: Iterable[tuple[int, int]], table: BrandTable, found: list[Finding]) -> None:
    """Check each stage-1 run, appending what is found to ``found`` (which holds the earlier
    findings: a run that starts inside the last one is checked from its end)."""
    lengths = table.lengths_by_slot
    fine = table.fine_slots
    edge = _EDGE
    four = _FOUR_DIGITS.search
    brand_of = table.brand_of
    for start, end in runs:
        segment = text[start:end]
        core = segment.strip(edge)
        if core.isdigit():
            # Fast path, the common case in logs: one contiguous number. Reject by length and
            # IIN before anything else; most numbers end here.
            n = len(core)
            if n < MIN_PAN or n > MAX_PAN or not core.isascii():
                continue
            slot = int(core[:4])
            if n not in lengths[slot] and not fine[slot]:
                continue
            if not (found and start < found[-1].end):
                # What _scan_run/_single do for a lone number that is not followed by track data.
                first = start + len(segment) - len(segment.lstrip(edge))
                after = first + n
                if text[after : after + 1] not in _TRACK_MARKS:
                    if luhn_valid(core):
                        brand = brand_of(core)
                        if brand is not None:
                            found.append(Finding(first, after, "pan", brand, core))
                    continue
        elif core.count(".") == 1:
            head, _, tail = core.partition(".")
            if head.isdigit() and tail.isdigit():
                # A plain decimal number: only its integer part can be a PAN ("4111111111111111.0"),
                # unless it is a float in scientific notation ("4.111111111111111e+15").
                n = len(head)
                if (n < MIN_PAN or n > MAX_PAN) and not (n == 1 and text[end : end + 1] in ("e", "E")):
                    continue
            elif not four(core):
                continue
        else:
            # Fast path for the usual grouped layouts (4-4-4-4, 4-6-5...): the whole run is one
            # natural layout whose digits are a PAN. _scan_chain would pick the same span.
            layout = _LAYOUT(core)
            if layout is None:
                if not four(core):  # every natural layout starts with a group of 4+ (IPs do not)
                    continue
            elif not (found and start < found[-1].end):
                digits = core.replace(layout.group("sep") or ".", "")  # one kind of separator
                brand = _valid(digits, table) if MIN_PAN <= len(digits) <= MAX_PAN else None
                if brand is not None:
                    first = start + len(segment) - len(segment.lstrip(edge))
                    after = first + len(core)
                    if text[after : after + 1] not in ("e", "E"):
                        found.append(Finding(first, after, "pan", brand, digits))
                        continue
        if found and start < found[-1].end:
            start = found[-1].end
        _scan_run(text, start, end, table, found)


def _scan_run(text: str, start: int, end: int, table: BrandTable, out: list[Finding]) -> None:
    segment = text[start:end]
    trimmed = segment.lstrip(_EDGE)
    start += len(segment) - len(trimmed)
    segment = trimmed.rstrip(_EDGE)
    end = start + len(segment)
    if segment.isdigit() and segment.isascii():
        if MIN_PAN <= len(segment) <= MAX_PAN:
            _single(text, start, end, segment, table, out, fraction=False)
        return
    if segment.count(".") == 1 and text[end : end + 1] not in ("e", "E"):
        head, _, tail = segment.partition(".")
        if head.isdigit() and tail.isdigit() and segment.isascii():
            if MIN_PAN <= len(head) <= MAX_PAN:
                _single(text, start, start + len(head), head, table, out, fraction=False)
            return
    # Digit groups, skipping the digits of numeric entities such as "&#8201;".
    groups: list[tuple[int, int]] = [
        m.span() for m in _GROUP_RE.finditer(text, start, end) if m.group()[0] != "&"
    ]
    if not groups:
        return
    chain: list[tuple[int, int]] = [groups[0]]
    gaps: list[str] = []
    for previous, current in itertools.pairwise(groups):
        gap = text[previous[1] : current[0]]
        if _SEPARATOR_RE.fullmatch(gap):
            chain.append(current)
            gaps.append(gap)
        else:
            _scan_chain(text, chain, gaps, table, out)
            chain, gaps = [current], []
    _scan_chain(text, chain, gaps, table, out)


def _scan_chain(
    text: str, chain: list[tuple[int, int]], gaps: list[str], table: BrandTable, out: list[Finding]
) -> None:
    """Try every start group; from each, the longest valid natural grouping wins."""
    if sum(end - start for start, end in chain) < MIN_PAN:
        return
    if len(chain) >= 2 and gaps[-1] == "." and _scientific(text, chain, table, out):
        return
    count = len(chain)
    # In a list of same-size numbers ("[3248 2438 7262 9531 4726 7837]") any four groups have a fair
    # chance to pass IIN + Luhn. A PAN starting at every fourth group (where adjacent PANs align) is
    # found for every brand; at any other group, for Visa, Mastercard, Amex and Discover only: that
    # keeps false positives on random lists at ~7% of lists instead of 15% (docs/masking.md).
    number_list = count >= 6 and len({end - start for start, end in chain}) == 1
    i = _iban_groups(text, chain)  # the groups of an IBAN are never a PAN; scanning starts after them
    while i < count:
        if out and chain[i][0] < out[-1].end:
            i += 1
            continue
        g_start, g_end = chain[i]
        digits = text[g_start:g_end]
        fraction = i > 0 and gaps[i - 1] == "."
        if MIN_PAN <= len(digits) <= MAX_PAN and _single(text, g_start, g_end, digits, table, out, fraction):
            i += 1
            continue
        best: tuple[int, str, str] | None = None
        if len(digits) >= 4:  # natural layouts start with a group of 4 (or 6): 4-4-4-4, 4-6-5, 6-13
            for j in range(i + 1, count):
                part_start, part_end = chain[j]
                size = part_end - part_start
                if size < 2:
                    break
                digits += text[part_start:part_end]
                if len(digits) > MAX_PAN:
                    break
                # Two groups joined by one dot are a decimal number ("5423.423423423423"), not a
                # layout; a dot among other separators is a layout ("4111 1111.1111 1111").
                if len(digits) >= MIN_PAN and not (j == i + 1 and gaps[i] == "."):
                    brand = _valid(digits, table)
                    if brand is not None and not (number_list and i % 4 and brand not in _LIST_BRANDS):
                        best = (j, digits, brand)
                if size < 3:
                    break  # a group of two digits can only end a PAN (4-4-4-2)
        if best is None:
            i += 1
            continue
        j, digits, brand = best
        out.append(Finding(g_start, chain[j][1], "pan", brand, digits))
        i = j + 1


_LIST_BRANDS = frozenset({"visa", "mastercard", "amex", "discover"})
"""Brands found at any position inside a list of same-size numbers (see ``_scan_chain``)."""

_IBAN_TABLE = (
    "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27 DK18 DO28 "
    "EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 "
    "JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 "
    "NO15 OM23 PK24 PL28 PS29 QA29 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 "
    "TN24 TR26 UA29 VA22 VG24 XK20 YE30"
)
IBAN_LENGTHS: dict[str, int] = {item[:2]: int(item[2:]) for item in _IBAN_TABLE.split()}
"""IBAN length per country (SWIFT IBAN registry)."""


def _iban_groups(text: str, chain: list[tuple[int, int]]) -> int:
    """How many leading groups of ``chain`` are an IBAN's check digits and all-digit BBAN, else 0.

    ``DE89 3704 0044 0532 0130 00``: a country code, two check digits, then exactly as many digits as
    that country's IBANs have. ``DE89 4111 1111 1111 1111`` has the wrong length for a German IBAN,
    so it is scanned like any other text (and the card number in it is found).
    """
    first = chain[0][0]
    if chain[0][1] - first != 2 or first < 2:
        return 0
    code = text[first - 2 : first]
    expected = IBAN_LENGTHS.get(code)
    if expected is None or (first > 2 and text[first - 3].isalnum()):
        return 0
    total = 4
    for index in range(1, len(chain)):
        total += chain[index][1] - chain[index][0]
        if total == expected:
            return index + 1
        if total > expected:
            break
    return 0


def _single(
    text: str, start: int, end: int, digits: str, table: BrandTable, out: list[Finding], fraction: bool
) -> bool:
    """One contiguous group of 12-19 digits: a track, a PAN, or nothing. Returns True when found."""
    after = text[end : end + 1]
    before = text[start - 1 : start] if start else ""
    if after == "^" and before == "B":
        tail = _TRACK1_TAIL.match(text, end)
        if tail:
            # Format code through discretionary data; the sentinels % and ? stay visible.
            out.append(Finding(start - 1, tail.end(), "track1", table.brand_of(digits), digits))
            return True
    if after == "=":
        tail = _TRACK2_TAIL.match(text, end)
        if tail and (before == ";" or _valid(digits, table)):
            out.append(Finding(start, tail.end(), "track2", table.brand_of(digits), digits))
            return True
    if fraction:
        return False  # the digits after a decimal point are never an integral PAN
    brand = _valid(digits, table)
    if brand is None:
        return False
    out.append(Finding(start, end, "pan", brand, digits))
    return True


def _scientific(text: str, chain: list[tuple[int, int]], table: BrandTable, out: list[Finding]) -> bool:
    """``4.111111111111111e+15``: a float rendering of an integral PAN (mantissa digits shown)."""
    (lead_start, lead_end), (frac_start, frac_end) = chain[-2], chain[-1]
    if lead_end - lead_start != 1 or text[lead_start] == "0":
        return False
    exponent = _EXPONENT.match(text, frac_end)
    if not exponent:
        return False
    fraction = text[frac_start:frac_end]
    power = int(exponent.group(1))
    if power < len(fraction) or len(fraction) + 1 < MIN_PAN:
        return False
    digits = text[lead_start] + fraction + "0" * (power - len(fraction))
    brand = _valid(digits, table)
    if brand is None:
        return False
    out.append(Finding(lead_start, frac_end, "pan", brand, digits))
    return True


def _valid(digits: str, table: BrandTable) -> str | None:
    if not table.possible(digits) or not luhn_valid(digits):
        return None
    return table.brand_of(digits)


def looks_like_pan(digits: str, table: BrandTable) -> bool:
    """True when a bare digit string is a PAN by IIN, length and Luhn."""
    return digits.isascii() and digits.isdigit() and _valid(digits, table) is not None
