"""``Masker``: turn findings into masked text, keeping every other character exactly as it was.

A masked PAN keeps its length and separators: only digits change, and only the policy's revealed
digits (last four, or BIN and last four) stay. Tracks are masked whole. With tokens enabled, a keyed
HMAC tag follows each masked PAN so that equal PANs can be matched without revealing them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from governed_kernel.masking.cards import BrandTable, default_table
from governed_kernel.masking.config import MaskingConfig
from governed_kernel.masking.report import MaskReport
from governed_kernel.masking.scanner import Finding, find

_DIGITS = frozenset("0123456789")
_NON_SPACE = re.compile(r"\S")


class MaskingError(RuntimeError):
    """Masking could not be done safely; the caller must drop the output, never pass it through."""


def reveal_counts(reveal: str, length: int) -> tuple[int, int]:
    """(leading, trailing) digits to show for a PAN of ``length`` digits.

    ``bin6`` shows up to six leading digits but always keeps at least five digits hidden, so short
    PANs (12-14 digits) show fewer: PCI DSS 3.4.1 allows *at most* BIN and last four.
    """
    if reveal == "none":
        return 0, 0
    trailing = 4 if length >= 10 else 0
    if reveal == "last4":
        return 0, trailing
    return max(0, min(6, length - trailing - 5)), trailing


class Masker:
    """Masks text under one :class:`MaskingConfig`. Thread-safe and cheap to share."""

    def __init__(self, config: MaskingConfig | None = None, *, token_key: bytes | None = None) -> None:
        self.config = config or MaskingConfig()
        self.table: BrandTable = default_table().with_brands(self.config.extra_brands)
        self._key = token_key
        if self.config.token_enabled and self._key is None:
            env = self.config.token_key_env or ""
            value = os.environ.get(env, "")
            if not value:
                raise MaskingError(
                    f"masking.token is enabled but the environment variable {env!r} holding the HMAC key "
                    "is unset or empty; set it or disable tokens"
                )
            self._key = value.encode()

    # -- finding ---------------------------------------------------------------------------------
    def find(self, text: str) -> list[Finding]:
        """Where the PANs and tracks are (spans, kinds, brands)."""
        return find(text, self.table)

    # -- masking ---------------------------------------------------------------------------------
    def mask_text(self, text: str, report: MaskReport | None = None) -> tuple[str, MaskReport]:
        """Mask every PAN and track in ``text``; returns the new text and what was masked."""
        report = report if report is not None else MaskReport()
        if not isinstance(text, str):
            raise MaskingError(f"mask_text needs str, not {type(text).__name__}")
        return self.apply(text, find(text, self.table), report), report

    def apply(self, text: str, findings: list[Finding], report: MaskReport) -> str:
        """Replace each finding's span in ``text`` by its masked form, counting it in ``report``."""
        if not findings:
            return text
        pieces: list[str] = []
        position = 0
        for finding in findings:
            pieces.append(text[position : finding.start])
            pieces.append(self.render(text[finding.start : finding.end], finding))
            position = finding.end
            report.add(finding.kind, finding.brand)
        pieces.append(text[position:])
        return "".join(pieces)

    def render(self, span: str, finding: Finding) -> str:
        """The masked form of one finding's text."""
        char = self.config.mask_char
        if finding.kind != "pan":
            return char * len(span)
        length = len(finding.pan)
        lead, trail = reveal_counts(self.config.reveal, length)
        keep_until, keep_from = lead, length - trail
        if len(span) == length and span.isdigit():  # contiguous: no separators to keep
            return span[:lead] + char * (keep_from - lead) + span[keep_from:] + self.token_suffix(finding.pan)
        out: list[str] = []
        index = 0
        for ch in span:
            if ch in _DIGITS:
                out.append(ch if index < keep_until or index >= keep_from else char)
                index += 1
            else:
                out.append(ch)
        return "".join(out) + self.token_suffix(finding.pan)

    def token(self, pan: str) -> str:
        """The keyed token of a PAN (16 hex digits of HMAC-SHA256), or "" when tokens are off."""
        if self._key is None:
            return ""
        return hmac.new(self._key, pan.encode(), hashlib.sha256).hexdigest()[:16]

    def token_suffix(self, pan: str) -> str:
        if self._key is None:
            return ""
        token = self.token(pan)
        return f"[tok:{token}]" if token else ""

    def mask_by_name(self, value: str, rule: str, report: MaskReport | None = None) -> str:
        """Mask a value found under a column or key named by a policy rule.

        ``full``: every non-space character becomes the mask character (CVV, PIN, track data).
        ``pan``: every digit is masked except the revealed ones, Luhn or not.
        """
        char = self.config.mask_char
        if rule == "full":
            if report is not None and value:
                report.add("sensitive_column")
            return _NON_SPACE.sub(char, value)
        digits = [ch for ch in value if ch in _DIGITS]
        if not digits:
            return value
        lead, trail = reveal_counts(self.config.reveal, len(digits))
        keep_from = len(digits) - trail
        out: list[str] = []
        index = 0
        for ch in value:
            if ch in _DIGITS:
                out.append(ch if index < lead or index >= keep_from else char)
                index += 1
            else:
                out.append(ch)
        if report is not None:
            report.add("pan_column")
        return "".join(out)


_default: Masker | None = None


def default_masker() -> Masker:
    """A shared masker with the default config (last four digits, ``*``)."""
    global _default
    if _default is None:
        _default = Masker()
    return _default


def mask_text(text: str, config: MaskingConfig | None = None) -> tuple[str, MaskReport]:
    """Mask PANs and tracks in ``text`` (default config unless given); returns (text, report)."""
    masker = default_masker() if config is None else Masker(config)
    return masker.mask_text(text)
