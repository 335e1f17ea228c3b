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
    re.DOTALL,
)
_WHOLE_CELL_SYNTAX = re.compile(
    r">>>|^[ \t]*%%|^[ \t]*\.{3,}:|^(?:(?:\[nav\]|\[ins\])? )?In \[\d+\]:", re.MULTILINE
)
"""IPython syntax that rewrites the whole cell: pasted prompts (doctest ``>>>`` anywhere)."""
_LITERALS = {
    literal: re.compile(re.escape(literal))
    for literal in (">>>", "%%", "..", "In [", "'''", '"""', "\\\n", "\n=")
}
"""Searches for fixed strings of a few characters. A compiled pattern finds them about twice as fast as
``in`` (CPython's substring search slows down when the needle's last character is common, as ``.`` or
a quote is in code); a single character is found with ``memchr``, fastest, so it is tested first where
it is rare."""
_LINE_START_WHOLE_CELL = re.compile(r"\n(?:[ \t]*(?:%%|\.{3,}:)|(?:(?:\[nav\]|\[ins\])? )?In \[\d+\]:)")
_FIRST_LINE_WHOLE_CELL = re.compile(r"[ \t]*(?:%%|\.{3,}:)|(?:(?:\[nav\]|\[ins\])? )?In \[\d+\]:")
""":data:`_WHOLE_CELL_SYNTAX` but ``>>>``, as a pattern that starts with a line break (the engine jumps
from one to the next in C instead of trying the alternatives at every character) and on the first line;
only run when the text holds ``%%``, ``..`` or ``In [`` (substring searches, cheaper still)."""
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
    r":(?<!=:)([\s\\)]*)(?:(\w*[^\W\d])(?!\w)(?:\s*\()*(?:[ \t]|\n\\)*(?=[;:\n]|\Z))?"
)
"""Reversed ``name: T`` at the start of a simple statement (``^``, ``;`` or ``:`` before it)."""
_KEYWORDS = frozenset(kwlist) | {"as"}
_EQ_FLAT = bytes(
    c if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"_=\n") else 61 if c == 58 else 32
    for c in range(256)
)
"""ASCII bytes → word characters, ``=`` and line breaks themselves, ``:`` → ``=``, others a space."""
_GAP_BYTES = b" \t\x0b\x0c\r\x1c\x1d\x1e\x1f)\\"
"""What may stand between a bound name and its ``=``/``:`` but a line break (ASCII white space, ``)``,
a backslash): deleted from :data:`_EQ_FLAT`'s copy."""
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
    lines: list[int] | None
    """Worked out by :meth:`line` when None (statements of several lines in an ASCII cell)."""
    sources: list[str]
    cell: str = ""
    """The cell as typed (``sources`` are its pieces); ``text`` when it is ASCII."""
    _at: tuple[int, int] = (0, 0)

    def index_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1

    def line(self, index: int) -> int:
        """The 0-based first line of statement ``index``; counted on from the statement asked before when
        it comes earlier (the classifier asks in order), so a cell is counted through at most once."""
        if self.lines is not None:
            return self.lines[index]
        at, line = self._at
        if index < at:
            at, line = 0, 0
        line += self.text.count("\n", self.starts[at], self.starts[index])
        self._at = (index, line)
        return line


def _whole_cell_syntax(cell: str) -> bool:
    """Whether :data:`_WHOLE_CELL_SYNTAX` matches, from cheaper searches: ``>>>`` anywhere, and the line
    patterns only when the cell holds ``%%``, ``..`` or ``In [``."""
    return bool(
        (">" in cell and _LITERALS[">>>"].search(cell))
        or (
            (
                ("%" in cell and _LITERALS["%%"].search(cell))
                or _LITERALS[".."].search(cell)
                or ("I" in cell and _LITERALS["In ["].search(cell))
            )
            and (_LINE_START_WHOLE_CELL.search(cell) or _FIRST_LINE_WHOLE_CELL.match(cell))
        )
    )


def split(cell: str) -> Chunks | None:
    """Top-level statements of ``cell``; None when the cell must be read as a whole."""
    if "\r" in cell or "\x0c" in cell or "\x00" in cell:
        return None
    stripped = cell.lstrip(" \t\n")
    if (
        not stripped
        or stripped.startswith("%%")
        or not (cell[: len(cell) - len(stripped)].endswith("\n") or len(stripped) == len(cell))
    ):
        return None  # empty, a cell magic, or a first line that IPython would dedent
    if _whole_cell_syntax(cell):
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
    if (
        ("'" in cell and _LITERALS["'''"].search(cell))
        or ('"' in cell and _LITERALS['"""'].search(cell))
        or ("\\" in cell and _LITERALS["\\\n"].search(cell))
    ):
        spans = [(m.start(), m.end()) for m in _STRINGS.finditer(cell) if "\n" in m.group()]
        if spans:
            inside = [s for s in starts if any(a < s < b for a, b in spans)]
            if inside:
                dropped = set(inside)
                starts = [s for s in starts if s not in dropped]
    if "@" in cell and any(cell.startswith("@", s) for s in starts):  # a decorator and what it decorates: one
        starts = [s for i, s in enumerate(starts) if i == 0 or not cell.startswith("@", starts[i - 1])]
    starts[0] = 0  # blank lines and comments before the first statement belong to it
    line_numbers: list[int] | None = None
    if len(starts) == cell.count("\n", 0, starts[-1]) + 1:
        line_numbers = list(range(len(starts)))  # one statement per line (the common case)
    elif text is not cell:
        line_numbers = []
        count = 0
        previous = 0
        for start in starts:
            count += cell.count("\n", previous, start)
            line_numbers.append(count)
            previous = start
    ends = [*starts[1:], len(cell)]
    sources = [cell[a:b] for a, b in zip(starts, ends, strict=True)]
    if text is not cell and line_numbers is not None:
        # Map the boundaries into the normalised text line by line (NFKC keeps every line break).
        text_line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        starts = [text_line_starts[line] for line in line_numbers]
    return Chunks(text, starts, line_numbers, sources, cell)


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
        self.keys: list[str] = (
            chunks.sources
            if text is chunks.cell or text == chunks.cell
            else [text[a:b] for a, b in zip(chunks.starts, self.ends, strict=True)]
        )
        self._of: dict[str, set[str]] = {}
        self._bound: dict[str, set[str]] = {}
        self._where: dict[str, set[int]] = {}
        self._bindable: set[str] | None = None
        self._eq: str | None = None
        self._imports: set[str] | None = None

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
                found = set(self.flat[start + 1 : end + 1].split())
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
            starts = self.chunks.starts
            bisect_right = bisect.bisect_right
            at = flat.find(needle)
            while at >= 0:
                # ``flat`` has one leading space: ``at`` is the word's offset - 1 (``index_of`` inlined).
                index = bisect_right(starts, at) - 1
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
        if "=" not in source and ":" not in source:
            found = set()
        else:
            found = _sites(source[::-1], "#" in source)
            if found is None:
                found = self.of(index) - _KEYWORDS
        if "import" in source and "import" in self.of(index):
            found = found | (_import_words(source, self.of(index)) - _KEYWORDS)
        self._bound[source] = found
        return found

    def binders(self, name: str) -> set[int]:
        """Indexes of the pieces that may bind ``name`` (see :meth:`bound`)."""
        if not self.may_bind(name):
            return set()
        return {index for index in self._where_one(name) if name in self.bound(index)}

    def may_bind(self, name: str) -> bool:
        """False only when no piece binds ``name`` (:meth:`bound`); one substring search.

        Every binding site is the name, a gap of white space, ``)`` and ``\\``, then ``=``, ``:=`` or
        ``:``. In :data:`_EQ_FLAT`'s copy of an ASCII text the gap characters but the line break are
        deleted and ``:`` is ``=``, so a site leaves ``name=`` in it (possibly after other word
        characters, which a substring search does not mind). A gap that crosses a line leaves a line
        break right before ``=``: then, and for other texts, the whole-text pass (:meth:`bindable`)
        answers. The words of pieces that import are bound too."""
        eq = self._eq
        if eq is None:
            eq = ""
            if self.flat is not None:
                eq = self.chunks.text.encode("ascii").translate(_EQ_FLAT, _GAP_BYTES).decode("ascii")
                if _LITERALS["\n="].search(eq):
                    eq = ""
            self._eq = eq
        if not eq:
            return name in self.bindable()
        if f"{name}=" in eq:
            return True
        if self._imports is None:
            self._imports = set()
            if "import" in self.all():
                for index in self._where_one("import"):
                    self._imports |= _import_words(self.keys[index], self.of(index))
        return name in self._imports

    def bindable(self) -> set[str]:
        """A superset of every piece's :meth:`bound`, from one pass over the whole text (see
        :func:`_bindable_sites`), plus the words of pieces that import; every word when a gap may hide a
        comment."""
        if self._bindable is None:
            text = self.chunks.text
            found = _bindable_sites(text[::-1], "#" in text)
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
    if comments and (
        "\n" in "".join([match[1] for match in assigns]) or "\n" in "".join([match[0] for match in annotated])
    ):
        return None
    found = {
        name
        for walrus, gap, name, before in assigns
        if name and not name[-1].isdecimal() and (walrus or not before or ")" in gap)
    }
    found.update([name for _, name in annotated if name])
    return {name[::-1] for name in found}


_REV_EQ = re.compile(r"=:?[\s\\)]*(\w+)")
"""Reversed ``name =`` / ``name :=`` / ``(name) =`` at every ``=``, without :data:`_REV_ASSIGN`'s checks
(``==``, keyword arguments, tuple elements, digits): the names it finds include all of its names."""
_REV_EQ_LINE_GAP = re.compile(r"=:?[\s\\)]*\n")
"""A ``=`` whose gap (as :data:`_REV_ASSIGN` takes it) crosses a line."""


def _bindable_sites(reverse: str, comments: bool) -> set[str] | None:
    """A superset of :func:`_sites` for a whole reversed text, cheaper: one name per ``=`` with no
    checks (a list of strings instead of tuples to filter), the annotated pattern as in :func:`_sites`,
    and None whenever :func:`_sites` could be None (a gap that crosses a line in a text with a ``#``)."""
    annotated = _REV_ANNOTATED.findall(reverse)
    if comments and ("\n" in "".join([match[0] for match in annotated]) or _REV_EQ_LINE_GAP.search(reverse)):
        return None
    found = set(_REV_EQ.findall(reverse))
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
