"""Property tests (hypothesis), the negative corpus (false-positive rate), streams, JSON/MIME, config."""

from __future__ import annotations

import random
import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from masking_helpers import load_cards  # type: ignore[import-not-found]

from governed_kernel.masking import (
    Masker,
    MaskingConfig,
    StreamMasker,
    luhn_valid,
    mask_bundle,
    mask_json,
    mask_text,
)

PANS = [pan for pan, _ in load_cards()]
MASKER = Masker()
ALPHABET = st.sampled_from(list("0123456789 -.\t\u00a0\u2009abcXYZ_=^;%?&#,:/\n"))


def visible_pans(text: str) -> list[str]:
    """Every Luhn-valid digit run with a brand that a reader could still see (ignoring separators)."""
    return [f.pan for f in MASKER.find(text)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(ALPHABET, max_size=12), st.sampled_from(PANS)), max_size=12))
def test_masked_output_has_no_pan_and_keeps_non_digits(parts: list[str]) -> None:
    text = "".join(parts)
    masked, _ = mask_text(text)
    assert visible_pans(masked) == []
    assert len(masked) == len(text)
    for before, after in zip(text, masked, strict=True):
        if before != after:
            assert after == "*"
            # Only digits change, except inside tracks (masked whole).
            assert before.isdigit() or "=" in text or "^" in text


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(PANS), st.text(ALPHABET, max_size=30), st.text(ALPHABET, max_size=30))
def test_pan_between_noise_is_never_left_whole(pan: str, left: str, right: str) -> None:
    masked, _ = mask_text(left + " " + pan + " " + right)
    assert pan not in masked


@settings(max_examples=200, deadline=None)
@given(st.text(ALPHABET, max_size=400), st.lists(st.integers(0, 400), max_size=6))
def test_stream_equals_whole_text(text: str, cuts: list[int]) -> None:
    """Masking in pieces never shows more than masking at once (PANs split across writes)."""
    text = text + " 4111 1111 1111 1111 " + text
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    stream = StreamMasker()
    out = "".join(stream.feed(p) for p in pieces) + stream.flush()
    assert len(out) == len(text)
    assert visible_pans(out) == []
    assert "4111 1111 1111 1111" not in out


def test_stream_split_pan_and_bounded_hold() -> None:
    stream = StreamMasker()
    out = stream.feed("card 4111 11")
    assert "4111" not in out
    out += stream.feed("11 1111 1111\nmore text\n")
    assert out == "card **** **** **** 1111\nmore text\n"
    assert stream.held == 0
    stream.feed("x " * 1000 + "1234 " * 500)
    assert stream.held <= 400
    assert stream.report.kinds["pan"] == 1


def test_stream_poll_releases_after_delay() -> None:
    now = [0.0]
    stream = StreamMasker(max_delay=0.5, clock=lambda: now[0])
    assert stream.feed("total 12345") == "total"
    assert stream.poll() == ""
    now[0] = 1.0
    assert stream.poll() == " 12345"


def negative_corpus(count: int = 2000) -> list[str]:
    """Look-alikes that are not card numbers: timestamps, phones, IBANs, UUIDs, order ids, ISBNs, IPs."""
    rng = random.Random(42)
    items: list[str] = []
    for _ in range(count // 10):
        items += [
            str(rng.randint(1_500_000_000_000, 1_800_000_000_000)),  # epoch millis
            f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00."
            f"{rng.randint(0, 999999):06d}Z",
            f"+{rng.choice(['1', '44', '49', '33', '353'])} {rng.randint(100, 999)} {rng.randint(100, 999)} "
            f"{rng.randint(1000, 9999)}",
            f"DE{rng.randint(10, 99)} "
            + " ".join(str(rng.randint(1000, 9999)) for _ in range(4))
            + f" {rng.randint(10, 99)}",
            str(uuid.UUID(int=rng.getrandbits(128))),
            f"ORD-{rng.randint(10**9, 10**10)}",
            f"978-{rng.randint(0, 9)}-{rng.randint(100, 999)}-{rng.randint(10000, 99999)}-"
            f"{rng.randint(0, 9)}",
            f"{rng.randint(1, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}",
            repr(rng.random() * 10 ** rng.randint(0, 5)),
            f"[{' '.join(str(rng.randint(1000, 9999)) for _ in range(6))}]",
        ]
    return items


def test_false_positive_rate_is_at_most_one_percent() -> None:
    corpus = negative_corpus()
    hits = [item for item in corpus if MASKER.find(item)]
    rate = len(hits) / len(corpus)
    print(f"negative corpus: {len(hits)}/{len(corpus)} flagged = {rate:.2%}")
    assert rate <= 0.01


def test_json_keys_values_numbers_and_column_rules() -> None:
    data = {
        "card_number": "1234-5678-9012-3456",  # Luhn fails, masked by name
        "cvv": 123,
        "note": "paid with 4111111111111111",
        "4111111111111111": [5555555555554444, 4111111111111111.0, 12, True, None],
    }
    masked, report = mask_json(data)
    assert masked["card_number"] == "****-****-****-3456"
    assert masked["cvv"] == "***"
    assert masked["note"] == "paid with ************1111"
    assert masked["************1111"] == ["************4444", "************1111", 12, True, None]
    assert report.kinds == {"pan": 4, "pan_column": 1, "sensitive_column": 1}
    assert data["cvv"] == 123  # input untouched


def test_mime_bundle() -> None:
    bundle = {
        "text/plain": "4111111111111111",
        "text/html": '<td data-pan="4111111111111111">4111&nbsp;1111&nbsp;1111&nbsp;1111</td>',
        "application/json": {"pan": 4111111111111111},
        "image/png": "iVBORw0KGgo4111111111111111",
        "text/markdown": ["a 4111", " 1111 1111 1111\n"],
    }
    masked, report = mask_bundle(bundle)
    assert masked["text/plain"] == "************1111"
    assert masked["text/html"] == '<td data-pan="************1111">****&nbsp;****&nbsp;****&nbsp;1111</td>'
    assert masked["application/json"] == {"pan": "************1111"}
    assert masked["image/png"] == bundle["image/png"]
    assert "".join(masked["text/markdown"]) == "a **** **** **** 1111\n"
    assert report.kinds["pan"] == 4 and report.kinds["pan_column"] == 1


@pytest.mark.parametrize(
    "data,message",
    [
        ({"reveal": "all"}, "reveal"),
        ({"mask_char": "**"}, "mask_char"),
        ({"mask_char": "5"}, "mask_char"),
        ({"full_mask_columns": ["("]}, "regex"),
        ({"extra_brands": [{"name": "x", "prefixes": ["7a"], "lengths": [16]}]}, "IIN range"),
        ({"extra_brands": [{"name": "x", "prefixes": ["70"], "lengths": [25]}]}, "length"),
        ({"token": {"enabled": True}}, "key_env"),
        ({"colour": "red"}, "unknown key"),
    ],
)
def test_config_rejects_bad_values(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MaskingConfig.from_mapping(data)


def test_config_column_rules() -> None:
    config = MaskingConfig.from_mapping({"reveal": "bin6", "pan_columns": ["^acct$"]})
    assert config.reveal == "bin6"
    assert config.column_rule("CVV2") == "full" and config.column_rule("card_pin") == "full"
    assert config.column_rule("spinner") is None
    assert config.column_rule("ACCT") == "pan" and config.column_rule("card_number") is None
    assert luhn_valid("4111111111111111")
    assert re.fullmatch(r"\*+", Masker(config).mask_by_name("123", "full"))
