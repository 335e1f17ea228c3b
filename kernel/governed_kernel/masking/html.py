"""Mask PANs in HTML while keeping the markup valid.

Only digits inside a found PAN (or a whole track) change, and they become the mask character,
which the config forbids from being ``<``, ``>``, ``&`` or a quote: tags, attributes and entities
stay as they were. Digit groups joined by entities (``4111&nbsp;1111...``) are found too.
"""

from __future__ import annotations

from governed_kernel.masking.report import MaskReport
from governed_kernel.masking.text import Masker, default_masker


def mask_html(
    html: str, masker: Masker | None = None, report: MaskReport | None = None
) -> tuple[str, MaskReport]:
    """Mask PANs in text nodes *and* attribute values (``data-card="4111..."`` leaks as well)."""
    return (masker or default_masker()).mask_text(html, report)
