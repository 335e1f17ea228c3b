"""Digits that are not ASCII, and digits that are not the card's.

A PAN written with full-width, Arabic-Indic, Devanagari or mathematical digits is still read as a
number by Python's ``int()`` and by people; it must be masked like an ASCII one. The digits inside
an entity separator (``4111&#32;1111...``) are not card digits: counting them used to shift the
mask and show eight digits of the card instead of four. Every check here looks at what a reader
would see: the card digits left visible, with entities taken out and every digit read as ASCII.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import unicodedata
from unittest import mock

import pytest
from masking_helpers import groups, load_cards  # type: ignore[import-not-found]

from governed_kernel.masking import Masker, MaskingConfig, StreamMasker, mask_json, scanner

PANS = [pan for pan, _ in load_cards()]
MASKER = Masker()
DIGIT_SYSTEMS = {
    "full width": 0xFF10,
    "arabic-indic": 0x0660,
    "extended arabic-indic": 0x06F0,
    "devanagari": 0x0966,
    "bengali": 0x09E6,
    "thai": 0x0E50,
    "mathematical bold": 0x1D7CE,
    "mathematical monospace": 0x1D7F6,
}
ENTITY_SEPARATORS = [
    "&#32;",
    "&#x20;",
    "&#160;",
    "&#xA0;",
    "&#8201;",
    "&#x2009;",
    "&#45;",
    "&#0032;",
    "&nbsp;",
]
_ENTITY = re.compile(r"&#?\w+;")


def in_digits(text: str, zero: int) -> str:
    return text.translate(str.maketrans("0123456789", "".join(chr(zero + d) for d in range(10))))


def visible_digits(masked: str) -> str:
    """The digits a reader sees, as ASCII, entity separators left out."""
    return "".join(str(unicodedata.decimal(ch)) for ch in _ENTITY.sub("", masked) if ch.isdecimal())


@pytest.fixture(params=["native", "pure"])
def path(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Run each test with the C accelerator (when built) and with the pure-Python reference."""
    if request.param == "native" and scanner.native_module() is None:
        pytest.skip(f"C accelerator: {scanner.native_status()}")
    if request.param == "pure":
        with mock.patch.object(scanner, "_native", None):
            yield request.param
    else:
        yield request.param


@pytest.mark.parametrize("system", DIGIT_SYSTEMS)
def test_every_card_in_every_digit_system_shows_only_its_last_four(path: str, system: str) -> None:
    zero = DIGIT_SYSTEMS[system]
    for pan in PANS:
        for text in (pan, " ".join(groups(pan)), "-".join(groups(pan)), f"card={pan};"):
            wide = in_digits(text, zero)
            masked, report = MASKER.mask_text(f"before {wide} after")
            assert visible_digits(masked) == pan[-4:], (system, text)
            assert report.total == 1
            assert masked == f"before {masked[7:-6]} after"  # nothing else changed


def test_mixed_ascii_and_wide_digits(path: str) -> None:
    for pan in PANS:
        mixed = "".join(ch if i % 2 else in_digits(ch, 0xFF10) for i, ch in enumerate(pan))
        masked, _ = MASKER.mask_text(f"x {mixed} y")
        assert visible_digits(masked) == pan[-4:]


@pytest.mark.parametrize("separator", ENTITY_SEPARATORS)
@pytest.mark.parametrize("reveal", ["last4", "bin6", "none"])
def test_entity_separators_keep_their_digits_and_hide_the_cards(
    path: str, separator: str, reveal: str
) -> None:
    masker = Masker(MaskingConfig(reveal=reveal))  # type: ignore[arg-type]
    for pan in PANS:
        text = separator.join(groups(pan))
        masked, _ = masker.mask_text(f"<td>{text}</td>")
        shown = visible_digits(masked)
        lead = {"last4": 0, "bin6": min(6, max(0, len(pan) - 9)), "none": 0}[reveal]
        trail = 0 if reveal == "none" else 4
        assert shown == pan[:lead] + (pan[-trail:] if trail else ""), (separator, pan, masked)
        assert _ENTITY.findall(masked) == _ENTITY.findall(text)  # entities intact: the HTML stays valid


def test_wide_pan_split_across_stream_writes(path: str) -> None:
    for pan in PANS[:20]:
        wide = in_digits(pan, 0xFF10)
        for cut in range(1, len(wide)):
            stream = StreamMasker(MASKER)
            out = stream.feed("id " + wide[:cut]) + stream.feed(wide[cut:] + " ok\n") + stream.flush()
            assert visible_digits(out) == pan[-4:], (pan, cut)


def test_wide_digits_under_a_pan_column_and_in_json(path: str) -> None:
    wide = in_digits("4111111111111112", 0x0660)  # Luhn fails: the column rule masks it anyway
    assert visible_digits(MASKER.mask_by_name(wide, "pan")) == "1112"
    data, _ = mask_json({"note": in_digits("paid with 4012 8888 8888 1881", 0xFF10), "card_number": wide})
    assert visible_digits(data["note"]) == "1881"
    assert visible_digits(data["card_number"]) == "1112"


def test_a_lone_ampersand_is_not_an_entity(path: str) -> None:
    assert MASKER.mask_by_name("AT&T 4111111111111111", "pan") == "AT&T ************1111"
    assert MASKER.mask_by_name("4111 1111&amp;1111 1111", "pan") == "**** ****&amp;**** 1111"
    assert MASKER.mask_text("R&D: 4012&#32;8888&#32;8888&#32;1881 & more")[0] == (
        "R&D: ****&#32;****&#32;****&#32;1881 & more"
    )


def test_wide_digits_that_are_not_a_card_are_left_alone(path: str) -> None:
    for text in [
        in_digits("order 1234567890123456", 0xFF10),  # Luhn fails
        in_digits("2024-01-01 12:00:00", 0x0660),
        in_digits("+49 30 1234 5678", 0x0966),
        "ⁱ⁴¹¹¹¹¹¹¹¹¹¹¹¹¹¹¹ superscripts are not decimal digits",
    ]:
        assert MASKER.mask_text(text)[0] == text


def test_dataframe_with_wide_digit_cards() -> None:
    pd = pytest.importorskip("pandas")
    from governed_kernel.masking import display_bundle

    frame = pd.DataFrame({"note": [in_digits(f"card {pan}", 0xFF10) for pan in PANS[:8]]})
    bundle, _ = display_bundle(frame, MASKER)
    for pan in PANS[:8]:
        wide_pan = in_digits(pan, 0xFF10)
        for rendered in bundle.values():
            assert wide_pan not in rendered
            assert in_digits(pan[:-4], 0xFF10) not in rendered


def test_scan_cli_finds_wide_digit_cards(tmp_path) -> None:  # type: ignore[no-untyped-def]
    notebook = tmp_path / "wide.ipynb"
    source = f"print('{in_digits('4012888888881881', 0xFF10)}')"
    notebook.write_text(
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "metadata": {},
                        "source": source,
                        "outputs": [],
                        "execution_count": None,
                    }
                ],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "governed_server.cli", "scan", str(notebook)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    wide = in_digits("4012888888881881", 0xFF10)
    assert "cell" in result.stdout.lower() and not any(wide[i : i + 4] in result.stdout for i in range(13))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain 4111",
        "caf\u00e9 \u00b2\u00b3\u00b9 \u00bd",
        "\u2009thin",
        "\u0660",
        "x\u0669",
        "\uff10",
        "\U0001d7ce",
        "\U0001f600 \u0966",
        "\u00b2\u2460\u2070 no decimal digits",
        "\ud800\udfff",
    ],
)
def test_has_wide_digit_pure_and_native_agree(text: str) -> None:
    from governed_kernel.masking import digits

    expected = any(ch.isdecimal() and not ch.isascii() for ch in text)
    assert digits.has_wide_digit(text) is expected
    native = scanner.native_module()
    if native is not None:
        assert native.has_wide_digit(text) is expected
    assert digits.ascii_digits(text) == "".join(
        str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text
    )
