"""Cut a cell into top-level statements without parsing it, and find where names may be bound.

The classifier parses only the statements that can matter (see ``Classifier._scan_incremental``), so
it needs statement boundaries from plain text. A boundary is a line that starts at column 0 with
something that can begin a statement, outside a multi-line string, not after a backslash
continuation, not a decorator's target and not ``else``/``elif``/``except``/``finally``. Brackets are
not tracked: a line at column 0 inside an open bracket is taken as a boundary, the piece before it then
does not parse on its own, and the classifier falls back to parsing the whole cell. Cells with
IPython syntax that rewrites the whole cell (cell magics, pasted prompts, a leading indent) or with
unusual line ends are not split at all (``split`` returns None).

Binding sites are found by regular expressions that over-approximate every binding the classifier
reads (``name = …``, ``a = name = …``, ``(name) = …``, ``name: T = …``, ``name := …`` and imports),
including keyword arguments and other false positives, which only make the closure larger.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass

WORD = re.compile(r"[^\W\d]\w*")
"""An identifier (Unicode letters too, as Python allows) or a keyword."""
_BOUNDARY = re.compile(r"(?<!\\\n)^(?![ \t\n#)\]}.])(?!(?:else|elif|except|finally)\b)", re.MULTILINE)
_STRINGS = re.compile(
    r"#[^\n]*|'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"",
    re.DOTALL)
_WHOLE_CELL_SYNTAX = re.compile(
    r">>>|^[ \t]*%%|^[ \t]*\.{3,}:|^(?:(?:\[nav\]|\[ins\])? )?In \[\d+\]:", re.MULTILINE)
"""IPython syntax that rewrites the whole cell: pasted prompts (doctest ``>>>`` anywhere)."""
_GAP = r"[\s\\)]*(?:#[^\n]*[\s\\)]*)*"
_ASSIGN_SITE = re.compile(r"(?<!\w)([^\W\d]\w*)(?!\w)" + _GAP + r":?=(?!=)")
"""``name =``, ``name :=``, ``(name) =``, with comments and line breaks between (and keyword arguments)."""
_ANNOTATED_SITE = re.compile(r"(?:^|[;:])(?:[ \t]|\\\n)*(?:\(\s*)*([^\W\d]\w*)(?!\w)" + _GAP + r":(?!=)",
                             re.MULTILINE)
"""``name: T = …`` at the start of a simple statement (the value may follow lines later)."""
IMPORT = re.compile(r"\bimport\b")


@dataclass
class Chunks:
    """``text`` is the cell as scanned for words (NFKC-normalised when it is not ASCII, as Python
    normalises identifiers); ``starts`` are the offsets of the statements in ``text``, ``lines`` their
    0-based first lines, ``sources`` the statements' original text."""

    text: str
    starts: list[int]
    lines: list[int]
    sources: list[str]

    def index_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1


def split(cell: str) -> Chunks | None:
    """Top-level statements of ``cell``; None when the cell must be read as a whole."""
    if "\r" in cell or "\x0c" in cell or "\x00" in cell:
        return None
    stripped = cell.lstrip(" \t\n")
    if not stripped or stripped.startswith("%%") or not (cell[: len(cell) - len(stripped)].endswith("\n")
                                                         or len(stripped) == len(cell)):
        return None  # empty, a cell magic, or a first line that IPython would dedent
    if _WHOLE_CELL_SYNTAX.search(cell):
        return None
    lines_ = stripped.split("\n", 2)
    if len(lines_) > 1 and (lines_[1].startswith("... ") or lines_[1] == "..."):
        return None  # IPython strips classic prompts when the second line has one
    text = cell
    if not cell.isascii():
        text = unicodedata.normalize("NFKC", cell)
        if text.count("\n") != cell.count("\n"):
            return None
    starts = [m.start() for m in _BOUNDARY.finditer(cell) if m.start() < len(cell)]
    if not starts:
        return None
    if "'''" in cell or '"""' in cell or "\\\n" in cell:
        spans = [(m.start(), m.end()) for m in _STRINGS.finditer(cell) if "\n" in m.group()]
        if spans:
            inside = [s for s in starts if any(a < s < b for a, b in spans)]
            if inside:
                dropped = set(inside)
                starts = [s for s in starts if s not in dropped]
    if any(cell.startswith("@", s) for s in starts):  # a decorator and what it decorates are one statement
        starts = [s for i, s in enumerate(starts) if i == 0 or not cell.startswith("@", starts[i - 1])]
    starts[0] = 0  # blank lines and comments before the first statement belong to it
    line_numbers = []
    count = 0
    previous = 0
    for start in starts:
        count += cell.count("\n", previous, start)
        line_numbers.append(count)
        previous = start
    ends = [*starts[1:], len(cell)]
    sources = [cell[a:b] for a, b in zip(starts, ends, strict=True)]
    if text is not cell:
        # Map the boundaries into the normalised text line by line (NFKC keeps every line break).
        text_line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        starts = [text_line_starts[line] for line in line_numbers]
    return Chunks(text, starts, line_numbers, sources)


def binding_sites(text: str) -> dict[str, list[int]]:
    """Every name that may be bound in ``text`` → offsets where it may be (over-approximated)."""
    sites: dict[str, list[int]] = {}
    for pattern in (_ASSIGN_SITE, _ANNOTATED_SITE):
        for match in pattern.finditer(text):
            sites.setdefault(match.group(1), []).append(match.start(1))
    return sites


def import_sites(text: str) -> list[int]:
    return [m.start() for m in IMPORT.finditer(text)]
