"""The fast paths give exactly what the reference paths give.

- text: the numpy prefilter (``scanner.prefilter_regions``) vs the pure-Python stage 1;
- rendering: ``Masker.render`` / ``mask_by_name`` (C-level translate) vs a per-character reference;
- Luhn on bytes vs the textbook loop;
- pandas: the small display frame built with pandas internals vs the public-API path.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from masking_helpers import layouts, load_cards  # type: ignore[import-not-found]

from governed_kernel.masking import (
    Masker,
    MaskingConfig,
    display_bundle,
    frames,
    luhn_valid,
    mask_for_display,
    mask_json,
    needs_masking,
    scanner,
)
from governed_kernel.masking.scanner import Finding, find, prefilter_available, prefilter_regions

MASKER = Masker()
PANS = [pan for pan, _ in load_cards()]
WORDS = [
    "the",
    "request",
    "completed",
    "after",
    "retry",
    "while",
    "worker",
    "waited",
    "for",
    "upstream",
    "service",
    "and",
    "cache",
]
needs_numpy_prefilter = pytest.mark.skipif(not prefilter_available(), reason="numpy >= 2.0 not importable")


@contextmanager
def prefilter_everywhere() -> Iterator[None]:
    """Use the prefilter on any text, however short or digit-dense (normally it steps aside)."""
    with mock.patch.object(scanner, "GATE_MIN_TEXT", 0), mock.patch.object(scanner, "GATE_MAX_COVER", 1e9):
        yield


def both_paths(text: str) -> list[Finding]:
    pure = find(text, MASKER.table, prefilter=False)
    with prefilter_everywhere():
        gated = find(text, MASKER.table, prefilter=True)
    assert gated == pure
    return pure


PIECES = st.one_of(
    st.text(st.sampled_from(list("0123456789 -.\t\u00a0\u2009\u202f\u4e00abcB_=^;%?&#,:/\n")), max_size=40),
    st.sampled_from(PANS),
    st.sampled_from(PANS).map(lambda pan: " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))),
    st.sampled_from(PANS).map(
        lambda pan: "&NonBreakingSpace;".join(pan[i : i + 4] for i in range(0, len(pan), 4))
    ),
    st.sampled_from(PANS).map(
        lambda pan: "&#x0000000a0;".join(pan[i : i + 4] for i in range(0, len(pan), 4))
    ),
    st.sampled_from(PANS).map(lambda pan: f"%B{pan}^DOE/J^2512101000000?"),
    st.sampled_from(PANS).map(lambda pan: f";{pan}=25121010000?"),
    st.sampled_from(PANS).map(lambda pan: f"{pan[0]}.{pan[1:]}e+{len(pan) - 1}"),
    st.sampled_from(["DE89 3704 0044 0532 0130 00 ", "3248 2438 7262 9531 4726 7837", "10.1.2.3 ", "\n" * 3]),
    st.lists(st.sampled_from([*WORDS, " ", "\n", ". "]), max_size=30).map("".join),
)


@needs_numpy_prefilter
@settings(max_examples=400, deadline=None)
@given(st.lists(PIECES, max_size=16))
def test_prefilter_finds_exactly_what_the_pure_pass_finds(parts: list[str]) -> None:
    text = "".join(parts)
    both_paths(text)
    with prefilter_everywhere():
        assert len(text) == 0 or prefilter_regions(text) is not None  # the gate really ran


@needs_numpy_prefilter
def test_prefilter_on_long_prose_with_every_card_in_every_layout() -> None:
    rng = random.Random(5)
    lines = []
    expected = 0
    for pan in PANS:
        for layout in layouts(pan).values():
            words = rng.choices(WORDS, k=150)
            words.insert(75, str(rng.randint(1, 2030)))
            lines.append(" ".join(words))
            lines.append(
                " ".join(rng.choices(WORDS, k=3)) + " " + layout + " " + " ".join(rng.choices(WORDS, k=3))
            )
            expected += 1
    # Separators the gate must bridge: the longest entity and zero-padded numeric entities.
    lines.append("x " + "&NonBreakingSpace;".join(["4111", "1111", "1111", "1111"]) + " y")
    lines.append("x " + "&#x00000000000000000000a0;".join(["5555", "5555", "5555", "4444"]) + " y")
    expected += 2
    text = "\n".join(lines) + "\n"
    assert len(text) > scanner.GATE_MIN_TEXT
    regions = prefilter_regions(text)
    assert regions is not None and sum(high - low for low, high in regions) < 0.6 * len(text)
    found = both_paths(text)
    assert len(found) == expected
    masked, report = MASKER.mask_text(text)
    assert report.total == expected and MASKER.find(masked) == []


@needs_numpy_prefilter
def test_prefilter_regions_long_lines_and_wide_characters() -> None:
    """No newline for many kilobytes: regions are cut at other break characters; characters above
    U+00FF count as separators in stage 1 and are never cut points."""
    filler = "word, " * 3000
    text = filler + "4111\u4e001111 1111 1111 " + filler + "card 5555\u20095555\u20095555\u20094444." + filler
    both_paths(text)
    assert [f.pan for f in MASKER.find(text)] == ["5555555555554444"]
    text = "x" * 40_000 + "4111111111111111" + "y" * 40_000  # glued to letters, no break at all
    assert [f.pan for f in both_paths(text)] == ["4111111111111111"]


def test_prefilter_steps_aside_without_numpy_or_for_short_or_dense_text() -> None:
    long_text = ("the cache warmed 4111 1111 1111 1111\n" + "plain words only\n" * 2000) * 2
    with mock.patch.object(scanner, "_HAVE_NUMPY", False):
        assert prefilter_regions(long_text) is None
        assert len(MASKER.find(long_text)) == 2
    assert prefilter_regions("4111 1111 1111 1111") is None  # short: pure pass
    dense = "order=1234567890123 ts=1700000000000\n" * 2000
    assert prefilter_regions(dense) is None or not prefilter_available()


def reference_render(span: str, pan: str, reveal: str, char: str) -> str:
    """Per-character rendering: the digit index counts every decimal digit of the span (wide digits
    too) except the digits inside an entity separator (``&#8201;`` is one separator, not digits)."""
    from governed_kernel.masking.text import reveal_counts

    lead, trail = reveal_counts(reveal, len(pan))
    keep_from = len(pan) - trail
    out, index, in_entity = [], 0, False
    for ch in span:
        in_entity = in_entity or ch == "&"
        if ch.isdecimal() and not in_entity:
            out.append(ch if index < lead or index >= keep_from else char)
            index += 1
        else:
            out.append(ch)
        in_entity = in_entity and ch != ";"
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(PANS),
    st.lists(
        st.sampled_from([" ", "-", ".", "\u00a0", "&#8201;", "&#32;", "&#x20;", "&nbsp;", " - "]),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["last4", "bin6", "none"]),
    st.sampled_from(["*", "#", "\u2022"]),
    st.integers(0, 3),
)
def test_render_matches_per_character_reference(
    pan: str, seps: list[str], reveal: str, char: str, extra: int
) -> None:
    masker = Masker(MaskingConfig(reveal=reveal, mask_char=char))  # type: ignore[arg-type]
    groups = [pan[i : i + 4] for i in range(0, len(pan), 4)]
    span = "".join(g + seps[i % len(seps)] for i, g in enumerate(groups[:-1])) + groups[-1]
    digits = pan + "0" * extra  # float renderings: the PAN may have more digits than the span shows
    finding = Finding(0, len(span), "pan", "visa", digits)
    assert masker.render(span, finding) == reference_render(span, digits, reveal, char)
    if not extra:
        assert masker.render(pan, Finding(0, len(pan), "pan", "visa", pan)) == reference_render(
            pan, pan, reveal, char
        )


@settings(max_examples=300, deadline=None)
@given(
    st.text(st.sampled_from(list("0123456789 -/abc\u00a0\u0663\uff14")), max_size=30),
    st.sampled_from(["last4", "bin6"]),
)
def test_mask_by_name_matches_per_character_reference(value: str, reveal: str) -> None:
    masker = Masker(MaskingConfig(reveal=reveal))  # type: ignore[arg-type]
    count = sum(ch.isdecimal() for ch in value)  # wide digits (\u0663, Arabic-Indic 3) are digits
    expected = reference_render(value, "0" * count, reveal, "*") if count else value
    assert masker.mask_by_name(value, "pan") == expected
    assert masker.mask_by_name(value, "full") == "".join(ch if ch.isspace() else "*" for ch in value)


@settings(max_examples=500, deadline=None)
@given(st.text(st.sampled_from("0123456789"), min_size=1, max_size=25))
def test_luhn_on_bytes_matches_textbook(digits: str) -> None:
    total = 0
    for index, ch in enumerate(reversed(digits)):
        value = int(ch) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    assert luhn_valid(digits) == (total % 10 == 0)


def test_finding_repr_never_shows_digits() -> None:
    (finding,) = MASKER.find("card 4111 1111 1111 1111")
    assert "4111" not in repr(finding) and finding.pan == "4111111111111111"


def frames_to_check() -> Iterator[pd.DataFrame]:
    rows = 1000
    yield pd.DataFrame(
        {
            "card_number": np.full(rows, 4111111111111111, dtype=np.int64),
            "order_id": np.arange(rows, dtype=np.int64) + 10**9,
            "amount": np.linspace(0, 1e12, rows),
            "cvv": (np.arange(rows) % 900 + 100).astype(np.int16),
            "note": pd.Categorical.from_codes(
                np.arange(rows) % 3, pd.Index(["shop 5555 5555 5555 4444", "cafe", "x"])
            ),
            "ts": pd.date_range("2024-01-01", periods=rows, freq="s"),
            "text": ["pan 4111111111111111 here" if i % 2 else None for i in range(rows)],
            "nullable": pd.array([4111111111111111 if i % 3 else None for i in range(rows)], dtype="Int64"),
        }
    )
    yield pd.DataFrame({"card": ["4111 1111 1111 1111", "n/a"], "v": [1, 2]})  # short: every row
    wide = pd.DataFrame(
        np.full((100, 40), 4111111111111111, dtype=np.int64), columns=[f"c{i}" for i in range(40)]
    )
    yield wide  # wider than display.max_columns
    multi = pd.DataFrame(
        {"v": np.arange(200)},
        index=pd.MultiIndex.from_arrays([np.full(200, 5555555555554444), np.arange(200)], names=["pan", "i"]),
    )
    yield multi
    yield pd.DataFrame({"x": np.arange(300)}, index=pd.Index(np.arange(300) + 4111111111111111, name="id"))


@pytest.mark.parametrize("frame", list(frames_to_check()), ids=lambda f: f"{f.shape}")
def test_fast_frame_path_equals_public_path(frame: pd.DataFrame) -> None:
    fast, fast_report = display_bundle(frame)
    with mock.patch.object(frames, "_FAST_FRAMES", False):
        public, public_report = display_bundle(frame)
    assert fast == public
    assert fast_report.as_dict() == public_report.as_dict()
    for out in fast.values():
        assert "4111111111111111" not in out and "5555 5555 5555 4444" not in out


def test_fast_frame_path_falls_back_when_pandas_internals_change() -> None:
    frame = next(frames_to_check())
    expected, expected_report = display_bundle(frame)
    with mock.patch.object(pd.DataFrame, "_from_arrays", side_effect=AttributeError("gone"), create=True):
        shown, report = mask_for_display(frame)
    assert repr(shown) == expected["text/plain"] and report.as_dict() == expected_report.as_dict()


@pytest.mark.parametrize("reveal", ["last4", "bin6"])
def test_revealed_digits_never_join_neighbours_into_a_card_number(reveal: str) -> None:
    """``**********5904 836259600000004``: the kept last four and the next number are Luhn-valid
    Maestro (found by hypothesis); such joins are masked too."""
    masker = Masker(MaskingConfig(reveal=reveal))  # type: ignore[arg-type]
    for text in ("30569309025904 836259600000004", "x 30569309025904 836259600000004 y\n" * 3):
        masked, report = masker.mask_text(text)
        assert MASKER.find(masked) == [] and len(masked) == len(text)
        assert report.kinds["pan"] >= text.count("30569309025904")


JSON_VALUES = st.recursive(
    st.one_of(
        st.lists(PIECES, max_size=4).map("".join),
        st.integers(min_value=-(10**19), max_value=10**19),
        st.sampled_from([int(p) for p in PANS[:5]] + [float(PANS[0]), 1.5, True, None]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(["id", "note", "cvv", "card_number", "pan", "x"]), st.text(max_size=6)),
            children,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.lists(PIECES, max_size=5).map("".join), max_size=8))
def test_one_scan_of_joined_strings_decides_like_one_scan_per_string(strings: list[str]) -> None:
    """``needs_masking`` joins the strings with newlines and scans once: exactly as many yes as
    scanning each string alone (no PAN or track spans a newline; no rule looks across one)."""
    assert needs_masking(strings, MASKER) == any(MASKER.find(text) for text in strings)


@settings(max_examples=500, deadline=None)
@given(JSON_VALUES)
def test_data_that_needs_no_masking_is_left_exactly_as_is(data: object) -> None:
    masked, report = mask_json(data, MASKER)
    if not needs_masking(data, MASKER):
        assert masked == data and report.total == 0
    if masked != data:
        assert needs_masking(data, MASKER)


class _Text(str):
    pass


@pytest.mark.parametrize(
    "data",
    [
        {"n": int(PANS[0])},  # a number in card range: masked to a string by the full walk
        {"n": float(PANS[0])},
        {"card_number": "1234-5678-9012-3456"},  # a key with a column rule
        {"cvv": "123"},
        {7: "a"},  # a key JSON would turn into text
        {"s": _Text("x")},  # subclasses: the full walk decides
        {"s": {1, 2}},  # a type JSON masking refuses: the full walk raises
        [f"paid with {PANS[3]}"],
    ],
)
def test_anything_the_fast_walk_cannot_decide_goes_the_full_way(data: object) -> None:
    assert needs_masking(data, MASKER)


def test_a_plain_audit_record_needs_no_masking() -> None:
    details = {"decision": {"action": "allow", "findings": []}, "duration_ms": 1.5, "n": 10**10}
    record = {"event_type": "cell.start", "user": "alice",
              "data": {"code": "x = 1\nprint(x)", "output": "", "details": details}}  # fmt: skip
    assert not needs_masking(record, MASKER)
    masked, report = mask_json(record, MASKER)
    assert masked == record and report.total == 0
