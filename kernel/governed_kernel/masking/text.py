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
from collections.abc import Callable

from governed_kernel.masking.cards import MAX_PAN, BrandTable, default_table
from governed_kernel.masking.config import MaskingConfig
from governed_kernel.masking.report import MaskReport
from governed_kernel.masking.scanner import SEPARATOR_PATTERN as _SEPARATOR
from governed_kernel.masking.scanner import Finding, _cut_after, _cut_before, find, native_module

_JOIN_AFTER = re.compile(rf"(?:{_SEPARATOR})?\d").match
_JOIN_BEFORE = re.compile(rf"\d(?:{_SEPARATOR})?\Z").search
_CARD_DIGIT = r"(?:&#?\w+;|&(?!#?\w+;)|[^\d&])*\d"
"""Up to and including the next digit of a PAN's text: any decimal digit (``digits``), but not the
digits of an entity separator (``&#32;``), which are not the card's."""
_DIGIT_OR_ENTITY = re.compile(r"&#?\w+;|\d")
_JOIN_REACH = 20
"""Characters around a masked PAN that a separator and a digit can take (the longest separator is an
18-character entity, see ``scanner``): where a new card-like number could start or end."""
_NON_SPACE = re.compile(r"\S")


_AFTER_DIGITS: dict[int, Callable[[str], re.Match[str] | None]] = {}
"""``_AFTER_DIGITS[n](span)`` matches up to and including the ``n``-th card digit of ``span``
(compiled on first use; ``n`` is at most 19 for a PAN)."""


def _after_digits(span: str, count: int) -> int:
    """Index in ``span`` right after its ``count``-th card digit (entity digits not counted), or
    ``len(span)`` when it has fewer."""
    match_upto = _AFTER_DIGITS.get(count)
    if match_upto is None:
        match_upto = _AFTER_DIGITS[count] = re.compile(rf"(?:{_CARD_DIGIT}){{{count}}}").match
    match = match_upto(span)
    return match.end() if match else len(span)


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
        self.column_rules: dict[str, str | None] = {}
        """Column-name rules already looked up (``frames._column_rule``; names without digits only)."""
        self._char = self.config.mask_char
        self._digit_map = str.maketrans("0123456789", self._char * 10)
        self._reveal = [reveal_counts(self.config.reveal, n) for n in range(MAX_PAN + 1)]
        self._reveal_lead = self.config.reveal == "bin6"
        self._reveal_mode = {"none": 0, "last4": 1, "bin6": 2}[self.config.reveal]
        self._most_shown = {"none": 0, "last4": 4, "bin6": 10}[self.config.reveal]
        """Most digits a masked PAN shows (PCI DSS 3.4.1: at most the BIN and the last four)."""

    # -- finding ---------------------------------------------------------------------------------
    def find(self, text: str, prefilter: bool | None = None) -> list[Finding]:
        """Where the PANs and tracks are (spans, kinds, brands). ``prefilter=False`` skips the numpy
        prefilter (same result, pure Python; see ``scanner.prefilter_regions``)."""
        return find(text, self.table, prefilter)

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
        native = native_module()
        if native is not None and self._key is None:  # (tokens change lengths: Python builds those)
            # One copy of the text, digits overwritten in place (C); None if the findings are not
            # sorted and disjoint. An exception propagates: the caller drops the output.
            done: tuple[str, dict[tuple[str, str | None], int], list[int]] | None = native.mask(
                text, findings, self._char, self._reveal_mode
            )
            if done is not None:
                masked, by_kind, near = done
                for (kind, brand), count in by_kind.items():
                    report.add(kind, brand, count)
                if self.config.reveal != "none" and near:
                    # ``near``: the PANs with a digit within 20 characters, a superset of the suspects.
                    masked = self._mask_joined(masked, [findings[i] for i in near], report)
                return masked
        pieces: list[str] = []
        append = pieces.append
        render = self.render
        counts: dict[tuple[str, str | None], int] = {}
        position = 0
        for finding in findings:
            start, end, kind, brand, _ = finding
            append(text[position:start])
            append(render(text[start:end], finding))
            position = end
            key = (kind, brand)
            counts[key] = counts.get(key, 0) + 1
        append(text[position:])
        for (kind, brand), count in counts.items():
            report.add(kind, brand, count)
        masked = "".join(pieces)
        if self.config.reveal != "none" and self._key is None:  # (a token keeps spans apart)
            masked = self._mask_joined(masked, findings, report)
        return masked

    def _mask_joined(self, masked: str, findings: list[Finding], report: MaskReport) -> str:
        """Mask card-like numbers that the revealed digits of a masked PAN form with digits next to
        it (``**********5904 836259600000004`` holds ``5904 836259600000004``, Luhn-valid Maestro).

        Only PANs followed (``bin6``: also preceded) by a digit, directly or after one separator, are
        looked at again, in a window around them; rounds repeat until nothing new is found (each
        round only masks more).
        """
        lead = self._reveal_lead
        suspects = [
            f
            for f in findings
            if f.kind == "pan"
            and (
                _JOIN_AFTER(masked, f.end)
                or (lead and _JOIN_BEFORE(masked, max(0, f.start - _JOIN_REACH), f.start))
            )
        ]
        if not suspects:
            return masked
        # Windows cut where no run can be (as the prefilter cuts), merged, so every run in them is whole.
        windows: list[tuple[int, int]] = []
        for suspect in suspects:
            low = _cut_before(masked, max(0, suspect.start - _JOIN_REACH))
            high = _cut_after(masked, min(len(masked), suspect.end + _JOIN_REACH))
            if windows and low <= windows[-1][1]:
                windows[-1] = (windows[-1][0], max(high, windows[-1][1]))
            else:
                windows.append((low, high))
        extra: list[Finding] = []
        for low, high in windows:
            for found in find(masked[low:high], self.table, prefilter=False):
                extra.append(found._replace(start=found.start + low, end=found.end + low))
        # Each round masks digits that were visible, so this ends; apply() checks the new spans again.
        return self.apply(masked, extra, report) if extra else masked

    def render(self, span: str, finding: Finding) -> str:
        """The masked form of one finding's text: only digits change (tracks: every character)."""
        char = self._char
        if finding.kind != "pan":
            return char * len(span)
        length = len(finding.pan)
        lead, trail = self._reveal[length] if length <= MAX_PAN else reveal_counts(self.config.reveal, length)
        keep_from = length - trail
        suffix = "" if self._key is None else self.token_suffix(finding.pan)
        if len(span) == length and span.isdigit():  # contiguous: no separators to keep
            return span[:lead] + char * (keep_from - lead) + span[keep_from:] + suffix
        # Digits with index lead .. keep_from - 1 (counting every ASCII digit in the span) are masked:
        # find where those start and stop, and translate the digits in between in one C call.
        masked_from = _after_digits(span, lead) if lead else 0
        masked_to = _after_digits(span, keep_from)
        return span[:masked_from] + self._hide_digits(span[masked_from:masked_to]) + span[masked_to:] + suffix

    def _hide_digits(self, piece: str) -> str:
        """``piece`` with every decimal digit replaced by the mask character, except the digits of
        entity separators (``&#32;``)."""
        if piece.isascii() and "&" not in piece:  # the usual case: one C call
            return piece.translate(self._digit_map)
        char = self._char
        return _DIGIT_OR_ENTITY.sub(lambda m: m[0] if m[0][0] == "&" else char, piece)

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
        char = self._char
        if rule == "full":
            if report is not None and value:
                report.add("sensitive_column")
            if value.isascii() and value.isalnum():  # the usual CVV/PIN: no spaces to keep
                return char * len(value)
            return _NON_SPACE.sub(char, value)
        if value.isdigit() and value.isascii():  # the usual case: a bare number
            count = len(value)
            lead, trail = (
                self._reveal[count] if count <= MAX_PAN else reveal_counts(self.config.reveal, count)
            )
            masked = value[:lead] + char * (count - lead - trail) + value[count - trail :]
        else:
            if value.isascii() and "&" not in value:
                count = sum(map(value.count, "0123456789"))
            else:  # wide digits count, entity digits do not (as in ``render``)
                count = sum(1 for m in _DIGIT_OR_ENTITY.finditer(value) if m[0][0] != "&")
            if not count or (self._char in value and count <= self._most_shown):
                # No digits, or masked already (``************1111``): masking again would hide the
                # revealed digits too, so a masked value would never be a fixed point.
                return value
            lead, trail = (
                self._reveal[count] if count <= MAX_PAN else reveal_counts(self.config.reveal, count)
            )
            start = _after_digits(value, lead) if lead else 0
            stop = _after_digits(value, count - trail)
            masked = value[:start] + self._hide_digits(value[start:stop]) + value[stop:]
        if report is not None:
            report.add("pan_column")
        return masked


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
