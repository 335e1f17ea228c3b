"""Mask whole files as the server serves them (contents API, ``/files/``, nbconvert, downloads).

What a file's bytes are read as (docs/outbound.md):

- **UTF-8**, with any byte that is not UTF-8 kept exactly as it is (``surrogateescape``). So ASCII
  digits are found in every file, text or binary, and in Latin-1 / cp1252 / other ASCII-compatible
  encodings too; only the digits of a card number change.
- **UTF-16 / UTF-32 with a byte-order mark**: decoded with that codec, masked by the same engine,
  encoded back (the mark kept).
- **UTF-16 without a mark** (and other NUL-interleaved digits): when the bytes hold NULs, they are
  also read as UTF-16 in both byte orders, from offset 0 and from offset 1: lossless views
  (``surrogatepass``) in which the engine finds what it finds in any text.
- **JSON** (``.ipynb``, ``.json``...): a notebook is masked part by part (:func:`mask_notebook`);
  when JSON escapes (``\\u0034``, ``\\u00a0`` between groups) or a card number written as a JSON
  number would survive the text pass, the document is re-serialised from the masked data.

Not read: compressed, encrypted or otherwise encoded content (zip, xlsx, gzip, base64 inside a
file), images, UTF-32 without a mark, digits written as HTML character references. Those are served
as they are; a deliberate encoding is out of any masker's reach (threat model).
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from governed_kernel.masking.jsonmask import mask_json, needs_masking
from governed_kernel.masking.notebook import mask_notebook, notebook_needs_masking
from governed_kernel.masking.report import MaskReport
from governed_kernel.masking.text import Masker, MaskingError, default_masker

JSON_SUFFIXES = (".json", ".ipynb", ".geojson", ".jupyterlab-workspace")
"""Files parsed as JSON after the text pass (lower-case name suffixes)."""

_BOMS: tuple[tuple[bytes, str, int], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le", 4),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be", 4),
    (codecs.BOM_UTF16_LE, "utf-16-le", 2),
    (codecs.BOM_UTF16_BE, "utf-16-be", 2),
)


def mask_file_bytes(
    raw: bytes, name: str = "", masker: Masker | None = None, report: MaskReport | None = None
) -> tuple[bytes, MaskReport]:
    """The masked bytes of a file named ``name`` (its suffix picks the JSON pass) and what was masked."""
    masker = masker or default_masker()
    report = report if report is not None else MaskReport()
    for bom, codec, unit in _BOMS:
        if raw.startswith(bom):
            return bom + _mask_codec(raw[len(bom) :], codec, unit, name, masker, report), report
    text = raw.decode("utf-8", "surrogateescape")
    masked = _mask_decoded(text, name, masker, report)
    out = raw if masked is text else masked.encode("utf-8", "surrogateescape")
    if b"\0" in out:
        out = _mask_utf16_views(out, masker, report)
    return out, report


def mask_file_text(
    text: str, name: str = "", masker: Masker | None = None, report: MaskReport | None = None
) -> tuple[str, MaskReport]:
    """The masked text of a file already decoded (the contents API's ``format: text`` models)."""
    masker = masker or default_masker()
    report = report if report is not None else MaskReport()
    if not isinstance(text, str):
        raise MaskingError(f"file text must be str, not {type(text).__name__}")
    masked = _mask_decoded(text, name, masker, report)
    if "\0" in masked:  # UTF-16 without a mark decodes as UTF-8 with a NUL after every ASCII character
        raw = masked.encode("utf-8", "surrogateescape")
        viewed = _mask_utf16_views(raw, masker, report)
        if viewed is not raw:
            masked = viewed.decode("utf-8", "surrogateescape")
    return masked, report


def is_json_name(name: str) -> bool:
    return name.lower().endswith(JSON_SUFFIXES)


def _mask_decoded(text: str, name: str, masker: Masker, report: MaskReport) -> str:
    """Text pass, then the JSON pass for JSON files. Returns ``text`` itself when nothing changed."""
    local = MaskReport()
    masked = masker.mask_text(text, local)[0]
    if is_json_name(name) and (local or "\\u" in text):
        masked = _mask_json_document(text, masked, name, masker, local)
    if masked == text:
        return text
    report.merge(local)
    return masked


def _mask_json_document(original: str, masked: str, name: str, masker: Masker, report: MaskReport) -> str:
    """The JSON pass: the document's data masked. The text pass's result is kept (the file's own
    layout) when it is valid JSON whose data needs nothing more; else the document is re-serialised
    from its masked data (nbformat's layout for notebooks)."""
    notebook = name.lower().endswith(".ipynb")

    def mask(data: Any, into: MaskReport) -> Any:
        if notebook and isinstance(data, dict):
            if not notebook_needs_masking(data, masker):
                return data
            return mask_notebook(data, masker, into)[0]
        if not needs_masking(data, masker, by_name=False):
            return data
        return mask_json(data, masker, into, by_name=False)[0]

    if masked is not original:  # the common case: the text pass's result, if it is enough
        try:
            text_data = json.loads(masked)
        except ValueError:  # a card number as a JSON number, masked, is not JSON any more
            text_data = None
        if text_data is not None and mask(text_data, MaskReport()) == text_data:
            return masked
    try:
        data = json.loads(original)
    except ValueError:
        return masked  # not JSON after all: the text pass is what there is
    fresh = MaskReport()
    masked_data = mask(data, fresh)
    if masked_data == data:  # (a value masked by its key's name that is masked already, e.g. "***")
        return masked
    if notebook and isinstance(masked_data, dict):
        out = json.dumps(masked_data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    else:
        out = json.dumps(masked_data, indent=1, ensure_ascii=False)
    report.kinds.clear()
    report.brands.clear()
    report.merge(fresh)  # counted from the data, not from the text pass
    return out


def _mask_codec(body: bytes, codec: str, unit: int, name: str, masker: Masker, report: MaskReport) -> bytes:
    """Bytes in a UTF-16/32 codec (after the mark): decode, mask, encode; a ragged tail kept as is."""
    cut = len(body) - len(body) % unit
    try:
        text = body[:cut].decode(codec, "surrogatepass")
    except UnicodeDecodeError:
        # Not that codec after all (e.g. UTF-32 code points out of range): read it as UTF-8 bytes.
        return _mask_utf8_bytes(body, name, masker, report)
    masked = _mask_decoded(text, name, masker, report)
    if masked is text:
        return body
    return masked.encode(codec, "surrogatepass") + body[cut:]


def _mask_utf8_bytes(raw: bytes, name: str, masker: Masker, report: MaskReport) -> bytes:
    text = raw.decode("utf-8", "surrogateescape")
    masked = _mask_decoded(text, name, masker, report)
    return raw if masked is text else masked.encode("utf-8", "surrogateescape")


def _mask_utf16_views(raw: bytes, masker: Masker, report: MaskReport) -> bytes:
    """Mask text in UTF-16 without a mark: both byte orders, from offset 0 and 1 (lossless views)."""
    out = raw
    for codec in ("utf-16-le", "utf-16-be"):
        for offset in (0, 1):
            body = out[offset:]
            ragged = len(body) % 2  # a last byte alone (e.g. half of the last digit): padded, then cut
            view = (body + b"\0" * ragged).decode(codec, "surrogatepass")
            masked = masker.mask_text(view, report)[0]
            if masked != view:
                encoded = masked.encode(codec, "surrogatepass")
                out = out[:offset] + (encoded[:-1] if ragged else encoded)
    return out
