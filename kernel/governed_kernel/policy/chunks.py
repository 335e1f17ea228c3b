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
reads (``name = …``, ``a = name = …``, ``(name) = …``, ``name: T = …``, ``name := …`` and imports);
false positives only make the closure larger. See :class:`Words`.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from keyword import kwlist

WORD = re.compile(r"[^\W\d]\w*")
"""An identifier (Unicode letters too, as Python allows) or a keyword."""
_BOUNDARY = re.compile(r"\n(?<!\\\n)(?![ \t\n#)\]}.=:\\])(?!(?:else|elif|except|finally)\b)")
"""A line break before a line that may start a statement (the statement starts after the match).

Lines that can only continue a statement are not boundaries: indented lines, comments, closing
brackets, ``.``, and ``=``/``:``/``\\`` (a binding's ``=``/``:=``/``:`` is then always in the same piece
as its target, which the binding sites below rely on)."""
_FIRST_BOUNDARY = re.compile(r"(?![ \t\n#)\]}.=:\\])(?!(?:else|elif|except|finally)\b)")
_STRINGS = re.compile(
    r"#[^\n]*|'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"",
    re.DOTALL)
_WHOLE_CELL_SYNTAX = re.compile(
    r">>>|^[ \t]*%%|^[ \t]*\.{3,}:|^(?:(?:\[nav\]|\[ins\])? )?In \[\d+\]:", re.MULTILINE)
"""IPython syntax that rewrites the whole cell: pasted prompts (doctest ``>>>`` anywhere)."""
_WHOLE_CELL_HINTS = ((">", ">>>"), ("%", "%%"), (":", "...:"), ("[", "In ["))
"""Substrings without which :data:`_WHOLE_CELL_SYNTAX` cannot match (a cheap test first), each after
one of its characters (found with ``memchr``, much faster than a search for several)."""
# Binding sites are found right to left, anchored on each ``=`` / ``:`` of a piece's reversed text, so
# no match can swallow another site (a left-to-right pattern whose gap may hold a comment could run
# from a ``#`` inside a string to a later ``=`` and hide the real target in between).
_REV_ASSIGN = re.compile(r"=(?<!==)(:?)([\s\\)]*)(?:(\w+)([ \t]*[(,])?)?")
"""Reversed ``name =``, ``name :=``, ``(name) =``: the ``:``, the gap, the name, and a ``(`` or ``,`` right
before the name on its line. ``f(name=…)``, ``f(a, name=…)`` (a keyword argument or a default) and
``a, name = …`` (part of a tuple, which the classifier does not resolve) are not bindings it reads: a
plain ``=`` with no ``)`` in the gap and ``(`` or ``,`` before the name does not count. The name is the
whole run of word characters; a run whose last character (the name's first) is a digit is no name
(:func:`_sites` drops it: a plain run of word characters and that test is much cheaper than a pattern
that asks for a non-digit at the run's end, which backtracks on every match, and finds the same names
at the same ``=``)."""
_REV_ANNOTATED = re.compile(
    r":(?<!=:)([\s\\)]*)(?:(\w*[^\W\d])(?!\w)(?:\s*\()*(?:[ \t]|\n\\)*(?=[;:\n]|\Z))?")
"""Reversed ``name: T`` at the start of a simple statement (``^``, ``;`` or ``:`` before it)."""
_KEYWORDS = frozenset(kwlist) | {"as"}
_DIGITS = "0123456789"
_DIGIT_LED = re.compile(r" [0-9]")
_FLAT = bytes(c if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 95) else 32 for c in range(256))
"""ASCII bytes → themselves for word characters, a space for everything else."""


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
    if (any(char in cell and hint in cell for char, hint in _WHOLE_CELL_HINTS)
            and _WHOLE_CELL_SYNTAX.search(cell)):
        return None
    lines_ = stripped.split("\n", 2)
    if len(lines_) > 1 and (lines_[1].startswith("... ") or lines_[1] == "..."):
        return None  # IPython strips classic prompts when the second line has one
    text = cell
    if not cell.isascii():
        text = unicodedata.normalize("NFKC", cell)
        if text.count("\n") != cell.count("\n"):
            return None
    starts = [0] if _FIRST_BOUNDARY.match(cell) else []
    starts.extend([m.end() for m in _BOUNDARY.finditer(cell)])
    if starts and starts[-1] >= len(cell):
        starts.pop()
    if not starts:
        return None
    if "'''" in cell or '"""' in cell or "\\\n" in cell:
        spans = [(m.start(), m.end()) for m in _STRINGS.finditer(cell) if "\n" in m.group()]
        if spans:
            inside = [s for s in starts if any(a < s < b for a, b in spans)]
            if inside:
                dropped = set(inside)
                starts = [s for s in starts if s not in dropped]
    if "@" in cell and any(cell.startswith("@", s) for s in starts):  # a decorator and what it decorates: one
        starts = [s for i, s in enumerate(starts) if i == 0 or not cell.startswith("@", starts[i - 1])]
    starts[0] = 0  # blank lines and comments before the first statement belong to it
    if len(starts) == cell.count("\n", 0, starts[-1]) + 1:
        line_numbers = list(range(len(starts)))  # one statement per line (the common case)
    else:
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


class Words:
    """Words of a cell and of its pieces, where names are used and where they may be bound; lazy, so a
    long cell pays only for the pieces and names that matter.

    Word semantics are those of :data:`WORD` (``0x1f`` holds the word ``x1f``). For an ASCII text every
    run of word characters is found on a copy where everything else is a space (one ``bytes.translate``),
    so looking for a name is a substring search for `` name ``; other texts use the regular expression.
    """

    def __init__(self, chunks: Chunks) -> None:
        self.chunks = chunks
        text = chunks.text
        self.ends = [*chunks.starts[1:], len(text)]
        self.flat: str | None = None
        if text.isascii():
            self.flat = " " + text.encode("ascii").translate(_FLAT).decode("ascii") + " "
        self._all: set[str] | None = None
        self._digit_led: set[str] = set()
        # Pieces with the same text have the same words and bindings: computed once per text.
        self.keys: list[str] = (chunks.sources if text == "".join(chunks.sources) else
                                [text[a:b] for a, b in zip(chunks.starts, self.ends, strict=True)])
        self._of: dict[str, set[str]] = {}
        self._bound: dict[str, set[str]] = {}
        self._where: dict[str, set[int]] = {}
        self._bindable: set[str] | None = None

    def all(self) -> set[str]:
        """Every word of the cell."""
        if self._all is None:
            if self.flat is None:
                self._all = set(WORD.findall(self.chunks.text))
            else:
                runs = set(self.flat.split())
                led = {run for run in runs if run[0] in _DIGITS}
                if led:
                    runs -= led
                    self._digit_led = {run.lstrip(_DIGITS) for run in led} - {""}
                    runs |= self._digit_led
                self._all = runs
        return self._all

    def of(self, index: int) -> set[str]:
        """The words of one piece."""
        key = self.keys[index]
        found = self._of.get(key)
        if found is None:
            start, end = self.chunks.starts[index], self.ends[index]
            if self.flat is None:
                found = set(WORD.findall(self.chunks.text, start, end))
            else:
                found = set(self.flat[start + 1:end + 1].split())
                if _DIGIT_LED.search(self.flat, start, end + 1):
                    found = {run.lstrip(_DIGITS) for run in found} - {""}
            self._of[key] = found
        return found

    def where(self, names: Iterable[str]) -> set[int]:
        """Indexes of the pieces that hold one of ``names`` as a word."""
        found: set[int] = set()
        for name in names:
            found |= self._where_one(name)
        return found

    def _where_one(self, name: str) -> set[int]:
        found = self._where.get(name)
        if found is not None:
            return found
        found = set()
        index_of = self.chunks.index_of
        flat = self.flat
        if self._all is None:
            self.all()
        if flat is None or name in self._digit_led:
            pattern = re.compile(rf"(?<![\w]){re.escape(name)}(?![\w])")
            text = self.chunks.text
            for match in pattern.finditer(text):
                found.add(index_of(match.start()))
            for match in re.finditer(rf"\d{re.escape(name)}(?![\w])", text):  # ``2name`` holds ``name``
                found.add(index_of(match.start()))
        else:
            needle = f" {name} "
            ends = self.ends
            at = flat.find(needle)
            while at >= 0:
                index = index_of(at)  # ``flat`` has one leading space: ``at`` is the word's offset - 1
                found.add(index)
                # The rest of that piece adds nothing: go on from the next piece (whose first word's
                # needle starts at flat offset ``starts[index + 1]`` or later).
                at = flat.find(needle, ends[index])
        self._where[name] = found
        return found

    def bound(self, index: int) -> set[str]:
        """Names that may be bound in one piece, over-approximated (``a.b =``, ``=`` inside strings count).

        ``name =``, ``name :=``, ``(name) =``, ``name: T`` and, when the piece imports, the words of its
        code (:func:`_import_words`); not keyword arguments or tuple elements (see :data:`_REV_ASSIGN`).
        A gap between a target and its ``=`` that crosses a line in a piece with a ``#`` may hide a
        comment: then every word of the piece counts. Worked out once per distinct piece text.
        """
        source = self.keys[index]
        found = self._bound.get(source)
        if found is not None:
            return found
        words = self.of(index)
        if "=" not in source and ":" not in source:
            found = set()
        else:
            found = _sites(source[::-1], "#" in source)
            if found is None:
                found = words - _KEYWORDS
        if "import" in words:
            found = found | (_import_words(source, words) - _KEYWORDS)
        self._bound[source] = found
        return found

    def binders(self, name: str) -> set[int]:
        """Indexes of the pieces that may bind ``name`` (see :meth:`bound`)."""
        if name not in self.bindable():
            return set()
        return {index for index in self._where_one(name) if name in self.bound(index)}

    def bindable(self) -> set[str]:
        """A superset of every piece's :meth:`bound`, from one pass over the whole text: the same reversed
        patterns (a match over the whole text finds the same names, and more where a gap runs into the
        piece before), plus the words of pieces that import; every word when a gap may hide a comment."""
        if self._bindable is None:
            text = self.chunks.text
            found = _sites(text[::-1], "#" in text)
            if found is None:
                self._bindable = self.all()
            else:
                if "import" in self.all():
                    for index in self._where_one("import"):
                        found |= _import_words(self.keys[index], self.of(index))
                self._bindable = found
        return self._bindable



def _sites(reverse: str, comments: bool) -> set[str] | None:
    """The names bound in a reversed text; None when a gap crosses a line and the text has a ``#`` (a
    comment may hide the target: every word counts). Both patterns run in full (the regular-expression
    engine is most of the cost), then the gaps are tested at once and the names gathered by
    comprehensions, which is cheaper than a Python loop over the matches."""
    assigns = _REV_ASSIGN.findall(reverse)
    annotated = _REV_ANNOTATED.findall(reverse)
    if comments and ("\n" in "".join([match[1] for match in assigns])
                     or "\n" in "".join([match[0] for match in annotated])):
        return None
    found = {name for walrus, gap, name, before in assigns
             if name and not name[-1].isdecimal() and (walrus or not before or ")" in gap)}
    found.update([name for _, name in annotated if name])
    return {name[::-1] for name in found}


def _import_words(source: str, words: set[str]) -> set[str]:
    """The words of a piece that imports, without its comments: an import statement holds no string,
    so on a line without quotes everything after ``#`` is a comment (a comment line after an import
    would otherwise make every word of its prose a name bound by the import). With triple quotes in the
    piece a line may be inside a string: then every word counts."""
    if "#" not in source or "'''" in source or '"""' in source:
        return words
    kept = [line if "'" in line or '"' in line else line.partition("#")[0] for line in source.split("\n")]
    return set(WORD.findall("\n".join(kept)))

