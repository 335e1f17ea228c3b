"""``OutputArea``: a cell's outputs as a client shows and saves them, so that a card number that
only appears when stream messages are joined is retracted.

Each stream message is masked on its own, and :class:`~governed_kernel.masking.StreamMasker` holds
a tail that may still grow into a PAN, but only for ``max_delay``: a PAN printed in pieces with
pauses leaves as harmless pieces. JupyterLab (and nbformat, when it saves) joins consecutive stream
messages of the same name into one output, then applies backspaces and carriage returns, and shows
the whole number. This model joins them the same way; when the joined text (as saved, or as shown)
holds a PAN that no single message did, the caller *retracts*: it sends ``clear_output(wait=True)``
and :attr:`Retraction.outputs`, the cell's outputs again with the stream masked as a whole. The next
output after a ``wait`` clear replaces the area, so the client never keeps the joined digits.

The same model runs in the kernel (first line, :mod:`governed_kernel.session`) and in the server's
data-path guard (when the kernel's own masking was bypassed,
:mod:`governed_server.single_user.guard`), with the
scanner and carry-over rules of :mod:`governed_kernel.masking.stream`.

Bounded: a cell's retained outputs are capped (``cap`` characters); older ones are forgotten and a
retraction then says how many it could not show again (the audit record still has their text).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from governed_kernel.masking.report import MaskReport
from governed_kernel.masking.stream import MAX_PAN_SPAN, TRACK_SPAN
from governed_kernel.masking.text import Masker

OUTPUT_TYPES = frozenset(
    {"stream", "display_data", "execute_result", "error", "update_display_data", "clear_output"}
)
"""IOPub messages that change a cell's output area."""
DEFAULT_CAP = 1 << 20
"""Characters of output (stream text and bundle strings) one area keeps for a retraction."""
DEFAULT_AREAS = 16
"""Cells whose areas an :class:`OutputAreas` keeps at once (older ones are dropped)."""

_JOIN_SPAN = MAX_PAN_SPAN + TRACK_SPAN
"""How far a PAN (or track) can reach across the boundary between two messages."""
_LINE_SPAN = 1 << 16
"""How much of the last line a carriage return is followed back over (longer lines: the end only)."""
_CONTROL = re.compile(r"[\r\x08\x1b]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_BACKSPACE = re.compile(r"[^\n]\x08")
_DIGITS = frozenset("0123456789")
NOTICE = (
    "[governed] {count} earlier output(s) of this cell are not shown again: a card number completed "
    "across outputs was masked. The audit record keeps their masked text.\n"
)


def rendered(text: str) -> str:
    """``text`` as JupyterLab shows a stream: ANSI escapes hidden, backspaces and carriage returns
    applied (each ``\\r`` overwrites the start of its line)."""
    if not _CONTROL.search(text):
        return text
    text = _ANSI.sub("", text)
    while True:
        shorter = _BACKSPACE.sub("", text)
        if len(shorter) == len(text):
            break
        text = shorter
    text = re.sub(r"\r+\n", "\n", text)
    if "\r" not in text:
        return text
    lines = []
    for line in text.split("\n"):
        parts = line.split("\r")
        shown = parts[0]
        for part in parts[1:]:
            shown = part + shown[len(part) :]
        lines.append(shown + ("\r" if line.endswith("\r") else ""))
    return "\n".join(lines)


@dataclass
class Output:
    """One output as the client keeps it (already masked)."""

    msg_type: str
    content: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    def size(self) -> int:
        if self.msg_type == "stream":
            return len(self.content.get("text", ""))
        return sum(len(value) for value in _strings(self.content))


@dataclass
class Retraction:
    """What to send instead of the message that completed a PAN: ``clear_output(wait=True)``, then
    ``outputs`` in order (``notice`` first, as stderr, when older outputs were forgotten)."""

    outputs: list[Output]
    forgotten: int
    report: MaskReport

    @property
    def notice(self) -> str:
        return NOTICE.format(count=self.forgotten) if self.forgotten else ""


class OutputArea:
    """The outputs of one cell, joined as the client joins them. Not thread-safe (see OutputAreas)."""

    def __init__(self, masker: Masker, cap: int = DEFAULT_CAP) -> None:
        self.masker = masker
        self.cap = cap
        self.outputs: list[Output] = []
        self.forgotten = 0
        self._size = 0
        self._clear_pending = False

    def add(
        self, msg_type: str, content: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> Retraction | None:
        """Take one (masked) output message as the client will; a :class:`Retraction` when the
        client would then show or save a PAN, ``None`` when the message can go as it is."""
        if msg_type == "clear_output":
            if content.get("wait"):
                self._clear_pending = True
            else:
                self._clear()
            return None
        if msg_type == "update_display_data":
            self._update(content, metadata or {})
            return None
        if msg_type not in OUTPUT_TYPES:
            return None
        if self._clear_pending:
            self._clear()
        last = self.outputs[-1] if self.outputs else None
        if msg_type == "stream":
            name, text = str(content.get("name", "")), str(content.get("text", ""))
            if last is not None and last.msg_type == "stream" and last.content.get("name") == name:
                return self._append(last, text)
            output = Output("stream", {"name": name, "text": ""})
            self._keep(output)
            return self._append(output, text)
        self._keep(Output(msg_type, dict(content), dict(metadata or {})))
        return None

    # -- streams ----------------------------------------------------------------------------------
    def _append(self, output: Output, text: str) -> Retraction | None:
        before = output.content["text"]
        joined = before + text
        output.content["text"] = joined
        self._size += len(text)
        retraction = None
        if self._completes_pan(before, text):
            report = MaskReport()
            masked = self.masker.mask_text(rendered(joined), report)[0]
            if report.total:
                output.content["text"] = masked
                self._size += len(masked) - len(joined)
                retraction = report
        self._trim()
        if retraction is None:
            return None
        copies = [Output(o.msg_type, dict(o.content), dict(o.metadata)) for o in self.outputs]
        return Retraction(copies, self.forgotten, retraction)

    def _completes_pan(self, before: str, text: str) -> bool:
        """Whether the client's joined text (as saved or as shown) holds a PAN around the join."""
        if _CONTROL.search(text) or _CONTROL.search(before[-_JOIN_SPAN:]):
            start = min(before.rfind("\n") + 1, max(0, len(before) - _JOIN_SPAN))
            window = before[max(start, len(before) - _LINE_SPAN) :] + text
            return bool(self.masker.find(window) or self.masker.find(rendered(window)))
        head = before[-_JOIN_SPAN:]
        if _DIGITS.isdisjoint(head) or _DIGITS.isdisjoint(text[:_JOIN_SPAN]):
            return False
        return bool(self.masker.find(head + text[:_JOIN_SPAN]))

    # -- the rest of the area ---------------------------------------------------------------------
    def _keep(self, output: Output) -> None:
        self.outputs.append(output)
        self._size += output.size()
        self._trim()

    def _trim(self) -> None:
        while self._size > self.cap and len(self.outputs) > 1:
            self._size -= self.outputs.pop(0).size()
            self.forgotten += 1

    def _clear(self) -> None:
        self.outputs, self._size, self._clear_pending, self.forgotten = [], 0, False, 0

    def _update(self, content: dict[str, Any], metadata: dict[str, Any]) -> None:
        display_id = (content.get("transient") or {}).get("display_id")
        if not display_id:
            return
        for output in self.outputs:
            if (output.content.get("transient") or {}).get("display_id") == display_id:
                output.content = {**output.content, "data": content.get("data", {}),
                                  "metadata": content.get("metadata", {})}  # fmt: skip
                output.metadata = dict(metadata)


class OutputAreas:
    """The areas of the last few cells, by the parent ``msg_id`` of their messages. Thread-safe: the
    kernel sends streams from its IOPub thread and displays from the main thread."""

    def __init__(self, masker: Masker, *, cap: int = DEFAULT_CAP, keep: int = DEFAULT_AREAS) -> None:
        self.masker = masker
        self.cap = cap
        self.keep = keep
        self._areas: OrderedDict[str, OutputArea] = OrderedDict()
        self.lock = threading.RLock()
        """Held by callers across ``observe`` and the sending of a retraction, so that no other
        output of the cell is sent in between."""

    def observe(
        self, parent_id: str, msg_type: str, content: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> Retraction | None:
        """Take one outgoing (masked) message; see :meth:`OutputArea.add`. ``status`` idle ends the area."""
        if not parent_id:
            return None
        with self.lock:
            if msg_type == "status":
                if content.get("execution_state") == "idle":
                    self._areas.pop(parent_id, None)
                return None
            if msg_type not in OUTPUT_TYPES:
                return None
            area = self._areas.get(parent_id)
            if area is None:
                area = self._areas[parent_id] = OutputArea(self.masker, self.cap)
                while len(self._areas) > self.keep:
                    self._areas.popitem(last=False)
            else:
                self._areas.move_to_end(parent_id)
            return area.add(msg_type, content, metadata)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []
