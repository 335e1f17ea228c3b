"""Mask a Jupyter MIME bundle (``{"text/plain": ..., "text/html": ..., "application/json": ...}``).

Text types are masked as text, HTML as HTML, JSON types (``application/json``, ``*+json``) as data.
Images and other binary payloads (base64) are left alone: masking digits in base64 would corrupt
them, and images of digits are out of scope (docs/masking.md). Anything else is masked as text or
data by its Python type; an unknown type raises (fail closed).
"""

from __future__ import annotations

from typing import Any

from governed_kernel.masking.html import mask_html
from governed_kernel.masking.jsonmask import mask_json
from governed_kernel.masking.report import MaskReport
from governed_kernel.masking.text import Masker, MaskingError, default_masker

BINARY_PREFIXES = ("image/", "audio/", "video/", "application/pdf", "application/octet-stream")


def is_binary(mime: str) -> bool:
    """True for payloads that are base64 data, not text (``image/svg+xml`` is text)."""
    return mime.startswith(BINARY_PREFIXES) and not mime.endswith(("+xml", "+json"))


def mask_bundle(
    bundle: dict[str, Any], masker: Masker | None = None, report: MaskReport | None = None
) -> tuple[dict[str, Any], MaskReport]:
    """A masked copy of a MIME bundle and what was masked (the input is not modified)."""
    masker = masker or default_masker()
    report = report if report is not None else MaskReport()
    out: dict[str, Any] = {}
    for mime, value in bundle.items():
        out[mime] = mask_mime_value(mime, value, masker, report)
    return out, report


def mask_mime_value(mime: str, value: Any, masker: Masker, report: MaskReport) -> Any:
    """Mask one value of a bundle according to its MIME type."""
    if is_binary(mime):
        return value
    if mime == "application/json" or mime.endswith("+json"):
        return mask_json(value, masker, report)[0]
    if isinstance(value, str):
        if mime == "text/html":
            return mask_html(value, masker, report)[0]
        return masker.mask_text(value, report)[0]
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        # nbformat stores multi-line text as a list of lines: mask the joined text, split it back.
        joined = "".join(value)
        masked = masker.mask_text(joined, report)[0]
        return masked.splitlines(keepends=True)
    if isinstance(value, (dict, list, int, float, bool)) or value is None:
        return mask_json(value, masker, report)[0]
    raise MaskingError(f"cannot mask a {type(value).__name__} value for MIME type {mime!r}")
