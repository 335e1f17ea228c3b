"""Detection and masking of text: every public test card in every layout, reveal modes, tracks."""

from __future__ import annotations

import re

import pytest
from masking_helpers import layouts, load_cards  # type: ignore[import-not-found]

from governed_kernel.masking import Masker, MaskingConfig, MaskingError, luhn_valid, mask_text

CARDS = load_cards()
DIGIT = re.compile(r"[0-9]")


def test_corpus_has_all_cards() -> None:
    assert len(CARDS) == 53
    assert {len(pan) for pan, _ in CARDS} >= {13, 14, 15, 16, 19}


@pytest.mark.parametrize("pan,brand", CARDS, ids=[f"{b}-{p[-4:]}" for p, b in CARDS])
def test_every_card_every_layout_is_masked(pan: str, brand: str) -> None:
    masker = Masker()
    assert luhn_valid(pan)
    for name, text in layouts(pan).items():
        masked, report = masker.mask_text(text)
        digits_left = "".join(DIGIT.findall(masked))
        assert pan not in digits_left.replace(" ", ""), f"{name}: PAN still visible"
        assert report.kinds["pan"] == 1, f"{name}: {report.summary()}"
        assert len(masked) == len(text), name
        # Only digits changed; the last four digits of the PAN are still there.
        assert [c for c in masked if not c.isdigit() and c != "*"] == [
            c for c in text if not c.isdigit() and c != "*"
        ], name
        assert masked.count("*") == len(pan) - 4, name


def test_default_reveal_keeps_last_four_and_separators() -> None:
    assert mask_text("4111 1111 1111 1111")[0] == "**** **** **** 1111"
    assert mask_text("pan=5555-5555-5555-4444;")[0] == "pan=****-****-****-4444;"


def test_reveal_modes() -> None:
    pan = "4111111111111111"
    assert Masker(MaskingConfig(reveal="bin6")).mask_text(pan)[0] == "411111******1111"
    assert Masker(MaskingConfig(reveal="none")).mask_text(pan)[0] == "*" * 16
    # Short PANs never show more than leaves five digits hidden.
    assert Masker(MaskingConfig(reveal="bin6")).mask_text("4007000000027")[0] == "4007*****0027"
    assert Masker(MaskingConfig(mask_char="#")).mask_text(pan)[0] == "############1111"


def test_float_renderings() -> None:
    assert mask_text("4111111111111111.0")[0] == "************1111.0"
    assert mask_text("x=4.111111111111111e+15")[0] == "x=*.***********1111e+15"
    # The fraction of a decimal is never a PAN, nor a decimal joined by one dot.
    assert mask_text("0.4111111111111111")[0] == "0.4111111111111111"
    assert mask_text("5423.423423423423")[0] == "5423.423423423423"


def test_tracks_are_masked_whole() -> None:
    track1 = "%B4111111111111111^DOE/JOHN^25121010000000000000?"
    masked, report = mask_text(f"read {track1} ok")
    assert masked == "read %" + "*" * (len(track1) - 2) + "? ok"
    assert report.kinds["track1"] == 1
    track2 = ";4111111111111111=25121010000000000?"
    masked, report = mask_text(track2)
    assert masked == ";" + "*" * (len(track2) - 2) + "?"
    assert report.kinds["track2"] == 1
    # Track 2 without sentinels, Luhn-valid PAN: still the whole track.
    masked, _ = mask_text("t2 5555555555554444=2612201123")
    assert "2612201123" not in masked and masked.startswith("t2 *")


def test_two_pans_and_trailing_numbers() -> None:
    masked, report = mask_text("4111 1111 1111 1111 5555 5555 5555 4444 exp 12 25")
    assert masked == "**** **** **** 1111 **** **** **** 4444 exp 12 25"
    assert report.kinds["pan"] == 2
    assert report.brands == {"visa": 1, "mastercard": 1}


def test_brand_ranges() -> None:
    m = Masker()
    assert m.table.brand_of("2223003122003222") == "mastercard"
    assert m.table.brand_of("6221261111117766") == "discover"
    assert m.table.brand_of("2200000000000004") == "mir"
    assert m.table.brand_of("7111111111111111") is None
    assert m.table.brand_of("41111111111") is None  # 11 digits: too short


def test_extra_brands_from_policy() -> None:
    pan = "7000000000000005"  # no default brand starts with 7
    assert luhn_valid(pan)
    assert mask_text(pan)[0] == pan
    config = MaskingConfig.from_mapping(
        {"extra_brands": [{"name": "private", "prefixes": ["70"], "lengths": [16]}]}
    )
    masked, report = Masker(config).mask_text(pan)
    assert masked == "************0005" and report.brands == {"private": 1}


def test_non_str_input_fails_closed() -> None:
    with pytest.raises(MaskingError):
        Masker().mask_text(b"4111111111111111")  # type: ignore[arg-type]


def test_token_needs_key_and_is_stable(monkeypatch: pytest.MonkeyPatch) -> None:
    config = MaskingConfig.from_mapping({"token": {"enabled": True, "key_env": "GK_TEST_KEY"}})
    monkeypatch.delenv("GK_TEST_KEY", raising=False)
    with pytest.raises(MaskingError, match="GK_TEST_KEY"):
        Masker(config)
    monkeypatch.setenv("GK_TEST_KEY", "secret")
    masker = Masker(config)
    a, _ = masker.mask_text("4111111111111111 and 4111-1111-1111-1111 and 5555555555554444")
    tokens = re.findall(r"\[tok:([0-9a-f]{16})\]", a)
    assert len(tokens) == 3 and tokens[0] == tokens[1] != tokens[2]
    monkeypatch.setenv("GK_TEST_KEY", "other")
    assert (
        re.findall(r"\[tok:([0-9a-f]{16})\]", Masker(config).mask_text("4111111111111111")[0])[0] != tokens[0]
    )


@pytest.mark.parametrize(
    "text,expected",
    [
        # A PAN right after an IBAN-like prefix (wrong length for a German IBAN: not an IBAN).
        ("DE89 4111 1111 1111 1111", "DE89 **** **** **** 1111"),
        (
            "iban DE89 3704 0044 0532 0130 00 card 4111 1111 1111 1111",
            "iban DE89 3704 0044 0532 0130 00 card **** **** **** 1111",
        ),
        (
            "DE89 3704 0044 0532 0130 00 4111 1111 1111 1111",
            "DE89 3704 0044 0532 0130 00 **** **** **** 1111",
        ),
        # A PAN at a non-aligned position inside a list of 6+ same-size numbers.
        ("[1234 4111 1111 1111 1111 5678 9012]", "[1234 **** **** **** 1111 5678 9012]"),
        ("[1234 5678 4111 1111 1111 1111]", "[1234 5678 **** **** **** 1111]"),
        ("0000 1234 9876 5555 5555 5555 4444 0000", "0000 1234 9876 **** **** **** 4444 0000"),
        # Mixed separators, one of them a dot.
        ("4111 1111.1111 1111", "**** ****.**** 1111"),
        ("4111.1111 1111 1111", "****.**** **** 1111"),
        ("4111-1111 1111-1111", "****-**** ****-1111"),
        ("4111\u2009-\u20091111 1111 1111", "****\u2009-\u2009**** **** 1111"),
        # Bounded by letters.
        ("ID4111111111111111X", "ID************1111X"),
        ("ref:ID4111-1111-1111-1111X", "ref:ID****-****-****-1111X"),
    ],
)
def test_formerly_weak_layouts_are_masked(text: str, expected: str) -> None:
    masked, report = mask_text(text)
    assert masked == expected
    assert report.kinds["pan"] == 1


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 00",  # a German IBAN (22 characters)
        "DE44 5001 0517 5407 3249 31",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91 ABNA 0417 1643 00",
        "5423.423423423423",  # a decimal: two groups joined by one dot
        "1234.5678 9",
        "[1000 2000 3000 4000 5000 6000 7000]",
        "ID41111111111111112X",  # 20 digits glued together: not a PAN (an id)
        "4111 1111.1111 1112",  # mixed separators, Luhn fails
    ],
)
def test_look_alikes_of_formerly_weak_layouts_are_left_alone(text: str) -> None:
    assert mask_text(text)[0] == text
