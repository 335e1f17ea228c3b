"""``StreamMasker``: mask text that arrives in pieces (stdout writes, flushes) without missing a PAN
split across two pieces.

Each ``feed`` masks what is certainly complete and holds back a short tail that could still be the
start of a PAN, an entity separator or a track. The tail is bounded (``max_hold`` characters plus
at most one PAN or track) and delayed at most until :meth:`flush` (end of cell) or :meth:`poll`
after ``max_delay`` seconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from governed_kernel.masking.digits import has_wide_digit
from governed_kernel.masking.report import MaskReport
from governed_kernel.masking.scanner import ENTITY_RE, SEPARATOR_CHARS
from governed_kernel.masking.text import Masker, default_masker

ENTITY_SPAN = 18
"""Longest separator entity (``&NonBreakingSpace;``; zero-padded numeric ones are found whole in
the text already held, see ``_safe_cut``)."""
MAX_PAN_SPAN = 19 + 18 * ENTITY_SPAN
"""Longest text a PAN can span: 19 digits and 18 separators of up to ``ENTITY_SPAN`` characters."""
TRACK_SPAN = 120
"""Longest tail of track data after the PAN (track 1 allows 79 characters in all, track 2 40)."""

_RUN_CHARS = frozenset("0123456789?" + SEPARATOR_CHARS)
_PARTIAL_ENTITY = re.compile(rf"&[#a-zA-Z0-9]{{0,{ENTITY_SPAN - 2}}}")
_DIGITS = frozenset("0123456789")


class StreamMasker:
    """Stateful masker for one stream (e.g. a cell's stdout). Not thread-safe: one per stream."""

    def __init__(
        self,
        masker: Masker | None = None,
        *,
        max_hold: int = MAX_PAN_SPAN,
        max_delay: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.masker = masker or default_masker()
        self.max_hold = max(max_hold, MAX_PAN_SPAN)
        self.max_delay = max_delay
        self.report = MaskReport()
        self._clock = clock
        self._held = ""
        self._since = 0.0

    @property
    def held(self) -> int:
        """How many characters are held back right now."""
        return len(self._held)

    def feed(self, chunk: str) -> str:
        """Add a chunk; returns the masked text that is safe to emit now (maybe "")."""
        buffer = self._held + chunk
        findings = self.masker.find(buffer)
        cut = self._safe_cut(buffer, findings)
        emitted = [f for f in findings if f.end <= cut]
        out = self.masker.apply(buffer[:cut], emitted, self.report)
        if cut < len(buffer) and not self._held:
            self._since = self._clock()
        self._held = buffer[cut:]
        return out

    def flush(self) -> str:
        """Mask and return everything held (end of cell, stream closed)."""
        held, self._held = self._held, ""
        return self.masker.mask_text(held, self.report)[0] if held else ""

    def poll(self) -> str:
        """Flush when the tail has been held longer than ``max_delay`` seconds; else return ""."""
        if self._held and self._clock() - self._since >= self.max_delay:
            return self.flush()
        return ""

    def _safe_cut(self, buffer: str, findings: list) -> int:  # type: ignore[type-arg]
        """The longest prefix that no PAN, entity or track can still extend past."""
        length = len(buffer)
        cut = length
        start = length
        amp = buffer.rfind("&", max(0, length - ENTITY_SPAN + 1))
        if amp >= 0 and _PARTIAL_ENTITY.fullmatch(buffer, amp):
            start = amp
        limit = max(0, length - self.max_hold)
        while start > limit:
            ch = buffer[start - 1]
            if ch in _RUN_CHARS or ch.isdecimal():  # (wide digits too: ``digits``)
                start -= 1
                continue
            if ch == ";":
                amp = buffer.rfind("&", max(0, start - ENTITY_SPAN), start)
                if amp >= 0 and ENTITY_RE.fullmatch(buffer, amp, start):
                    start = amp
                    continue
            break
        if start == limit and limit > 0:
            cut = limit
        elif not _DIGITS.isdisjoint(buffer[start:]) or has_wide_digit(buffer[start:]):
            cut = start
        for finding in findings:
            if finding.start < cut < finding.end:
                cut = finding.start
            if finding.end > length - TRACK_SPAN and buffer[finding.end : finding.end + 1] in ("", "^", "="):
                cut = min(cut, finding.start)
        # Keep a track's start sentinel and format code with it ("%B", ";") so it is still recognised.
        for _ in range(2):
            if cut < length and cut > 0 and buffer[cut - 1] in "%B;":
                cut -= 1
        return cut
