"""Whole files and notebooks as the server serves them: encodings, JSON escapes, notebook parts.

``mask_file_bytes`` / ``mask_file_text`` / ``mask_notebook`` are what the outbound guard runs on
every file route; these tests hold them to "no card number readable in any way a viewer would
show it" and "nothing else changes".
"""

from __future__ import annotations

import codecs
import json

import nbformat
import pytest
from masking_helpers import layouts, load_cards  # type: ignore[import-not-found]

from governed_kernel.masking import (
    Masker,
    MaskingConfig,
    mask_file_bytes,
    mask_file_text,
    mask_notebook,
    needs_masking,
    notebook_needs_masking,
)

VISA = "4111111111111111"
MASKER = Masker()
CARDS = load_cards()


def readable(data: bytes) -> list[str]:
    """Card numbers in ``data`` read as UTF-8, as UTF-16 (both byte orders), as JSON data."""
    texts = [data.decode("utf-8", "surrogateescape")]
    for offset in (0, 1):
        tail = data[offset:]
        texts.append(tail[: len(tail) // 2 * 2].decode("utf-16-le", "surrogatepass"))
    found = [f.pan for text in texts for f in MASKER.find(text)]
    try:
        if needs_masking(json.loads(data), MASKER, by_name=False):
            found.append("<json>")
    except ValueError:
        pass
    return found


@pytest.mark.parametrize("pan,brand", CARDS[::4], ids=[f"{b}-{p[-4:]}" for p, b in CARDS[::4]])
def test_every_layout_in_every_encoding_is_masked(pan: str, brand: str) -> None:
    for name, text in layouts(pan).items():
        for encoding in ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"):
            try:
                raw = text.encode(encoding)
            except UnicodeEncodeError:
                continue
            masked, report = mask_file_bytes(raw, "data.txt")
            assert report.total >= 1, (name, encoding)
            assert readable(masked) == [], (name, encoding)
            assert masked.decode(encoding) == MASKER.mask_text(text)[0], (name, encoding)


def test_bytes_that_are_not_utf8_are_kept_and_their_digits_masked() -> None:
    raw = "caf\xe9 4111 1111 1111 1111 \xff".encode("latin-1") + b"\x00\x80"
    masked, _ = mask_file_bytes(raw, "latin1.csv")
    assert masked == "caf\xe9 **** **** **** 1111 \xff".encode("latin-1") + b"\x00\x80"
    binary = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + VISA.encode() + b"\xde\xad"
    assert mask_file_bytes(binary, "x.png")[0] == binary.replace(VISA.encode(), b"************1111")


def test_utf16_without_a_mark_at_an_odd_offset_and_ending_on_the_pan() -> None:
    for raw in (b"\xff" + f"x {VISA}".encode("utf-16-be"), b"\x00" + f"x {VISA}".encode("utf-16-le")):
        masked, report = mask_file_bytes(raw, "x.bin")
        assert report.kinds["pan"] == 1 and readable(masked) == [] and len(masked) == len(raw)


def test_text_with_nul_bytes_from_the_contents_api() -> None:
    # UTF-16 LE without a mark decodes as UTF-8: a NUL after each character, shown as dots by editors.
    text = f"card {VISA}\n".encode("utf-16-le").decode("utf-8")
    masked, report = mask_file_text(text, "x.txt")
    assert report.kinds["pan"] == 1
    assert masked.encode("utf-8").decode("utf-16-le") == "card ************1111\n"


def test_a_file_without_card_numbers_is_returned_as_it_is() -> None:
    for raw in (b"", b"plain text 1234 5678\n", b"\x00\x01\xff" * 1000, json.dumps({"n": 12345}).encode()):
        masked, report = mask_file_bytes(raw, "x.json")
        assert masked is raw and report.total == 0
    text = '{"a": "\\u00e9t\\u00e9"}'
    assert mask_file_text(text, "x.json")[0] is text


def test_json_escapes_and_numbers_are_masked_and_the_json_stays_valid() -> None:
    escaped = '{"card": "' + "".join(f"\\u{ord(c):04x}" for c in VISA) + '"}'
    nbsp = '{"card": "' + "\\u00a0".join(["4111", "1111", "1111", "1111"]) + '"}'
    number = '{"card": 4111111111111111, "other": "x"}'
    for raw in (escaped, nbsp, number):
        masked, report = mask_file_text(raw, "data.json")
        assert report.kinds["pan"] == 1, raw
        data = json.loads(masked)
        assert not needs_masking(data, MASKER, by_name=False), raw
        assert data["card"].endswith("1111")
    # Not a .json name: escapes are text (a deliberate encoding, out of reach), numbers are masked.
    assert mask_file_text(escaped, "notes.txt")[0] == escaped
    assert mask_file_text(number, "notes.txt")[0] == '{"card": ************1111, "other": "x"}'


def notebook() -> dict[str, object]:
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"title": f"cards {VISA}"},
        "cells": [
            {"cell_type": "markdown", "id": "m", "metadata": {}, "source": [f"# {VISA}\n", "text\n"],
             "attachments": {"a.png": {"image/png": "iVBORw0KGgo="}, "t.txt": {"text/plain": VISA}}},
            {"cell_type": "code", "id": "c", "metadata": {"tags": [VISA]}, "execution_count": 1,
             "source": f"x = {VISA}",
             "outputs": [
                 {"output_type": "stream", "name": "stdout", "text": f"{VISA}\n"},
                 {"output_type": "execute_result", "execution_count": 1, "metadata": {},
                  "data": {"text/plain": VISA, "image/png": "iVBORw0KGgo=",
                           "application/json": {"cvv": "123", "pan": int(VISA)}}},
                 {"output_type": "error", "ename": "E", "evalue": VISA, "traceback": [f"\x1b[0;31m{VISA}"]},
             ]},
        ],
    }  # fmt: skip


def test_a_notebook_is_masked_part_by_part() -> None:
    nb = notebook()
    assert notebook_needs_masking(nb) and notebook_needs_masking(nbformat.from_dict(nb))
    masked, report = mask_notebook(nb)
    assert nb == notebook()  # not modified
    dumped = json.dumps(masked)
    assert VISA not in dumped and "************1111" in dumped
    again = mask_notebook(masked)[0]
    assert again == masked  # masking twice changes nothing (a "cvv" value stays "***")
    markdown, code = masked["cells"]
    assert markdown["source"] == ["# ************1111\n", "text\n"]
    assert markdown["attachments"]["a.png"] == {"image/png": "iVBORw0KGgo="}
    assert code["outputs"][1]["data"]["application/json"] == {"cvv": "***", "pan": "************1111"}
    assert code["outputs"][1]["data"]["image/png"] == "iVBORw0KGgo="
    assert code["outputs"][2]["traceback"] == ["\x1b[0;31m************1111"]
    assert report.kinds["pan"] >= 8 and report.kinds["sensitive_column"] == 1


def test_a_notebook_file_is_masked_and_stays_a_valid_notebook() -> None:
    raw = json.dumps(notebook(), indent=1).encode()
    masked, report = mask_file_bytes(raw, "analysis.ipynb")
    assert report.total >= 8 and readable(masked) == []
    nbformat.validate(nbformat.reads(masked.decode(), as_version=4))
    # Already masked: unchanged, byte for byte (a "cvv" value masked already stays as it is).
    assert mask_file_bytes(masked, "analysis.ipynb")[0] is masked
    # Without escapes, JSON numbers or column rules, the text pass keeps the file's own layout.
    plain = raw.replace(b"\\u001b", b"").replace(b'"pan": ' + VISA.encode(), b'"x": 1').replace(b"cvv", b"x")
    once = mask_file_bytes(plain, "analysis.ipynb")[0]
    assert once == MASKER.mask_text(plain.decode())[0].encode()


def test_the_mask_character_and_tokens_of_the_policy_apply() -> None:
    masker = Masker(MaskingConfig(mask_char="•"))
    masked, _ = mask_file_bytes(f"{VISA}\n".encode("utf-16"), "x.txt", masker)
    assert masked.decode("utf-16") == "••••••••••••1111\n"
    tokens = Masker(MaskingConfig(token_enabled=True, token_key_env="K"), token_key=b"k")
    masked, _ = mask_file_bytes(f"{VISA}\n".encode(), "x.txt", tokens)
    assert masked.startswith(b"************1111[tok:") and readable(masked) == []


def test_byte_order_marks_are_kept() -> None:
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        raw = bom + f"{VISA}".encode(codec)
        assert mask_file_bytes(raw, "x.txt")[0] == bom + "************1111".encode(codec)
