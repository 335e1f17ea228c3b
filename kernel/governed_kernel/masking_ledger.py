"""``OutputLedger``: what left the kernel for each cell, already masked, for the audit end record.

The masking Session records every outgoing message whose parent is a cell that was begun here: its
masked text (stream text, the text of each display bundle, tracebacks), a running sha256 and size
of all of it, the merged :class:`MaskReport`, and how many messages were withheld because masking
failed. The per-cell pipeline calls :meth:`OutputLedger.begin` before running a cell and
:meth:`OutputLedger.finish` after it. Stream and display messages are sent from the IOPub thread,
so every method takes a lock. Nothing here ever holds unmasked text.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from governed_kernel.masking import Masker, MaskReport

DEFAULT_TEXT_CAP = 64 * 1024
"""Bytes of masked output text kept per cell for the audit record (size and hash cover all of it)."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TEXT_TYPES = ("text/plain", "text/markdown", "text/latex", "text/html")


@dataclass(frozen=True)
class CellOutputs:
    """The masked outputs of one cell, as recorded in its audit end record."""

    text: str
    """Masked output text, capped to the ledger's ``text_cap`` bytes (UTF-8, cut on a character)."""
    size: int
    """UTF-8 bytes of all masked output text (not capped)."""
    sha256: str
    """Hex sha256 of all masked output text, in the order it left."""
    counts: dict[str, int]
    """What was masked, by kind (``pan``, ``track1``...); never digits."""
    dropped: int
    """Messages withheld because masking failed (each replaced by a visible notice)."""
    brands: dict[str, int] = field(default_factory=dict)
    """What was masked, by card brand."""


class _Cell:
    __slots__ = ("dropped", "hash", "report", "size", "text", "text_bytes")

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0
        self.text: list[str] = []
        self.text_bytes = 0
        self.report = MaskReport()
        self.dropped = 0


class OutputLedger:
    """Per-cell record of masked outputs, keyed by the execute request's ``msg_id``."""

    def __init__(self, text_cap: int = DEFAULT_TEXT_CAP, masker: Callable[[], Masker] | None = None) -> None:
        self.text_cap = text_cap
        self._masker = masker
        """The text is masked again as a whole when the cell ends: messages masked one by one can
        still join into a PAN in the record (a stream piece followed by a display's text)."""
        self._cells: dict[str, _Cell] = {}
        self._current: str | None = None
        self._lock = threading.Lock()
        self._finishers: list[Callable[[], None]] = []

    def add_finisher(self, finisher: Callable[[], None]) -> None:
        """Register a callable that sends held-back output (streams); :meth:`finish` runs it first."""
        self._finishers.append(finisher)

    # -- the pipeline's side ----------------------------------------------------------------------
    def begin(self, msg_id: str) -> None:
        """Start recording outputs whose parent is ``msg_id`` (the execute request)."""
        with self._lock:
            self._cells[msg_id] = _Cell()
            self._current = msg_id

    def run_finishers(self) -> None:
        """Send held-back stream output now (end of a cell); called by :meth:`finish` too."""
        for finisher in self._finishers:
            finisher()

    def finish(self, msg_id: str) -> CellOutputs:
        """Send held-back stream output, stop recording ``msg_id`` and return what left.

        Call it from the kernel's main thread after the cell ran; an unknown id gives empty outputs.
        """
        self.run_finishers()
        with self._lock:
            cell = self._cells.pop(msg_id, None) or _Cell()
            if self._current == msg_id:
                self._current = None
        data = "".join(cell.text).encode()[: self.text_cap].decode(errors="ignore")
        if self._masker is not None and data:
            data = self._masker().mask_text(data, cell.report)[0]
        return CellOutputs(
            text=data,
            size=cell.size,
            sha256=cell.hash.hexdigest(),
            counts=dict(sorted(cell.report.kinds.items())),
            dropped=cell.dropped,
            brands=dict(sorted(cell.report.brands.items())),
        )

    @property
    def current(self) -> str | None:
        """The most recently begun cell that is not finished (used when no parent is known)."""
        return self._current

    # -- the masking side -------------------------------------------------------------------------
    def recording(self, msg_id: str | None) -> bool:
        """Cheap check before extracting text from a message."""
        return msg_id is not None and msg_id in self._cells

    def add_text(self, msg_id: str | None, text: str) -> None:
        """Record masked text that left for ``msg_id``."""
        if not text or msg_id is None:
            return
        encoded = text.encode(errors="replace")
        with self._lock:
            cell = self._cells.get(msg_id)
            if cell is None:
                return
            cell.hash.update(encoded)
            cell.size += len(encoded)
            if cell.text_bytes < self.text_cap:
                cell.text.append(text)
                cell.text_bytes += len(encoded)

    def retracted(self, msg_id: str | None) -> None:
        """The client's outputs of ``msg_id`` were cleared and sent again: the record's text starts
        over with them (its size and hash still cover everything that left)."""
        with self._lock:
            cell = self._cells.get(msg_id or "")
            if cell is not None:
                cell.text, cell.text_bytes = [], 0

    def add_report(self, report: MaskReport, msg_id: str | None = None) -> None:
        """Merge what was masked (by the stream, display or Session masking) into a cell."""
        if not report:
            return
        with self._lock:
            cell = self._cells.get(msg_id or self._current or "")
            if cell is not None:
                cell.report.merge(report)

    def add_dropped(self, msg_id: str | None) -> None:
        """Count a message withheld because masking failed."""
        with self._lock:
            cell = self._cells.get(msg_id or self._current or "")
            if cell is not None:
                cell.dropped += 1

    def record_message(self, msg_type: str, content: dict[str, Any], msg_id: str | None) -> None:
        """Record the text of an outgoing (already masked) message if its parent is being recorded."""
        if not self.recording(msg_id):
            return
        text = message_text(msg_type, content)
        if text:
            self.add_text(msg_id, text)


def message_text(msg_type: str, content: dict[str, Any]) -> str:
    """The human-readable text of an output message: what an auditor would want to read."""
    if msg_type == "stream":
        return str(content.get("text", ""))
    if msg_type in ("display_data", "update_display_data", "execute_result"):
        data = content.get("data") or {}
        for mime in _TEXT_TYPES:
            value = data.get(mime)
            if isinstance(value, str):
                return value if value.endswith("\n") else value + "\n"
        return ""
    if msg_type == "error":
        traceback = content.get("traceback") or []
        text = "\n".join(str(line) for line in traceback)
        text = text or f"{content.get('ename')}: {content.get('evalue')}"
        return _ANSI.sub("", text) + "\n"
    return ""
