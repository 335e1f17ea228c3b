"""Rules compiled for speed: one regular expression per criterion, and the words that can trigger them.

Most cells match no rule. :class:`Triggers` answers "could any rule match this cell?" from the set of
identifier-like words in the raw text, which is far cheaper than parsing; a cell with no trigger word
and no IPython syntax cannot produce a finding, so the classifier skips the AST for it. The test is
conservative: words in strings and comments count, and every criterion contributes its words.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from governed_kernel.policy.model import Rule

WORD = re.compile(r"[^\W\d]\w*")
IPYTHON_SYNTAX = re.compile(r"^[ \t]*[%!?/,;]|=[ \t]*[!%]|\?[ \t]*$", re.MULTILINE)
_WILDCARD = re.compile(r"[*?\[]")

DYNAMIC_WORDS = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "__import__",
        "import_module",
        "getattr",
        "__dict__",
        "vars",
        "globals",
        "__builtins__",
        "builtins",
        "run_cell",
        "run_cell_async",
        "ex",
        "ev",
        "run_code",
        "run_line_magic",
        "run_cell_magic",
        "magic",
        "modules",
        "attrgetter",
        "methodcaller",
        "__getattribute__",
        "__getattr__",
    }
)
SQL_WORDS = frozenset({"sql", "to_sql", "exec_driver_sql"})
SQL_PREFIXES = ("read_sql", "execute", "read_database")


def _globs(patterns: Iterable[str], *, lower: bool = False) -> re.Pattern[str] | None:
    parts = [fnmatch.translate(p.lower() if lower else p) for p in patterns]
    return re.compile("|".join(parts)) if parts else None


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    references: re.Pattern[str] | None
    imports: re.Pattern[str] | None
    magics: re.Pattern[str] | None

    @classmethod
    def of(cls, rule: Rule) -> CompiledRule:
        return cls(
            rule,
            _globs(rule.match.references),
            _globs(rule.match.imports),
            _globs(rule.match.magics, lower=True),
        )

    def matches(self, criterion: str, subject: str) -> bool:
        """Whether this rule matches one observation (``criterion`` names the kind of observation)."""
        match = self.rule.match
        if criterion == "reference":
            return self.references is not None and self.references.match(subject) is not None
        if criterion == "import":
            return self.imports is not None and self.imports.match(subject) is not None
        if criterion == "magic":
            if self.magics is None:
                return False
            lowered = subject.lower()
            return (
                self.magics.match(lowered.split(" ", 1)[0]) is not None
                or self.magics.match(lowered) is not None
            )
        if criterion == "dynamic":
            return subject in match.dynamic
        if criterion == "sql":
            return subject in match.sql
        if criterion == "remote":
            return subject in match.remote_schemes
        return False


def _components(dotted: str) -> list[str]:
    return [part.replace("()", "") for part in dotted.split(".") if part.replace("()", "")]


@dataclass(frozen=True)
class _Need:
    words: frozenset[str]
    prefixes: tuple[str, ...]

    def met(self, words: frozenset[str] | set[str]) -> bool:
        if not self.words <= words:
            return False
        return all(any(word.startswith(prefix) for word in words) for prefix in self.prefixes)


def _need(pattern: str) -> _Need:
    words: set[str] = set()
    prefixes: list[str] = []
    for part in _components(pattern):
        found = _WILDCARD.search(part)
        if found is None:
            words.add(part)
        else:
            literal = part[: found.start()]
            literal = WORD.match(literal).group(0) if WORD.match(literal) else ""  # type: ignore[union-attr]
            if literal:
                prefixes.append(literal)
    return _Need(frozenset(words), tuple(prefixes))


SYNONYMS: dict[str, frozenset[str]] = {
    "posix": frozenset({"os"}),
    "nt": frozenset({"os"}),
    "__builtins__": frozenset({"builtins"}),
}
"""Module names the classifier normalises into another (``posix.system`` is ``os.system``)."""
RESOLVING_WORDS = DYNAMIC_WORDS | {"modules", "importlib"}
"""Words through which a string literal can become a name (``sys.modules['o' 's']``, ``getattr``,
``vars(x)[...]``, ``__import__``, code passed to ``exec``): the text need not contain the name itself."""
REMOTE_HINT = re.compile(r"://|\\|['\"](?:\s|#[^\n]*)*[rRbBuUfF]{0,2}['\"]")
"""``://`` in the text, or a string whose value may contain it without the text showing it (escapes,
implicitly concatenated literals)."""
_LINE_START_SYNTAX = re.compile(r"\n[ \t]*[%!?/,;]")
_FIRST_LINE_SYNTAX = re.compile(r"[ \t]*[%!?/,;]")
_ASSIGN_ESCAPE = re.compile(r"=[ \t]*[!%]")
_TRAILING_HELP = re.compile(r"\?[ \t]*$", re.MULTILINE)
_ADJACENT_STRINGS = re.compile(r"['\"](?:\s|#[^\n]*)*[rRbBuUfF]{0,2}['\"]")


def ipython_syntax_offsets(text: str) -> list[int]:
    """Where :data:`IPYTHON_SYNTAX` matches in ``text`` (every place, one pass per alternative, each
    starting with a fixed character so the regular-expression engine skips ahead in C)."""
    found = [m.start() + 1 for m in _LINE_START_SYNTAX.finditer(text)]
    if _FIRST_LINE_SYNTAX.match(text):
        found.append(0)
    if "=" in text:
        found.extend(m.start() for m in _ASSIGN_ESCAPE.finditer(text))
    if "?" in text:
        found.extend(m.start() for m in _TRAILING_HELP.finditer(text))
    return found


def _quote_classes() -> bytes:
    table = bytearray(b"x" * 256)
    for char in b"'\"":
        table[char] = ord("q")
    for char in b" \t\r\x0b\x0c\x1c\x1d\x1e\x1f":  # what ``\s`` matches in ASCII but ``\n``
        table[char] = ord("s")
    table[ord("\n")] = ord("n")
    table[ord("#")] = ord("h")
    for char in b"rRbBuUfF":
        table[char] = ord("p")
    return bytes(table)


_QUOTE_CLASSES = _quote_classes()
"""ASCII bytes → ``q`` quote, ``s`` space, ``n`` line break, ``h`` ``#``, ``p`` string prefix, ``x``."""


_ADJACENT_CANDIDATE = re.compile(rb"q(?=[qsnh]|pp?q)")


def _adjacent_strings(text: str) -> list[int]:
    """Every offset where :data:`_ADJACENT_STRINGS` matches. After its first quote comes a quote, a
    space, a line break, a comment or one or two prefix letters and a quote; that is found on a copy
    of the text reduced to character classes (a byte pattern that starts with a fixed byte, which the
    engine finds with ``memchr`` instead of trying the pattern at every quote), then checked."""
    if not text.isascii():
        return [m.start() for m in _ADJACENT_STRINGS.finditer(text)]
    classes = text.encode("ascii").translate(_QUOTE_CLASSES)
    match = _ADJACENT_STRINGS.match
    return [m.start() for m in _ADJACENT_CANDIDATE.finditer(classes) if match(text, m.start())]


_SCHEME_SEPARATOR = re.compile("://")


def remote_hint_offsets(text: str) -> list[int]:
    """Where :data:`REMOTE_HINT` matches in ``text`` (every place, one pass per alternative)."""
    found = _adjacent_strings(text)
    found.extend([m.start() for m in _SCHEME_SEPARATOR.finditer(text)])  # faster than ``str.find``
    at = text.find("\\")
    while at >= 0:
        found.append(at)
        at = text.find("\\", at + 1)
    return found


IO_WORD = re.compile(
    r"\b(?:to_\w+|read_\w+|open|save\w*|savefig|upload\w*|put\w*|write\w*|copy\w*|"
    r"download\w*|get_object)\b"
)


@dataclass(frozen=True)
class Active:
    """What in one cell can make a rule match.

    ``words``: words (after alias and synonym expansion) that take part in a rule the cell could meet;
    ``search``: the words of the text itself that stand for them (alias names included);
    ``expand``: text word → the active words it stands for; ``always``: no cheaper test applies.
    """

    words: frozenset[str]
    search: frozenset[str]
    expand: Mapping[str, frozenset[str]]
    always: bool = False
    names: frozenset[str] = frozenset()
    """The active words that count through a binding (``x = os`` makes ``x.system`` ``os.system``);
    SQL call names do not: the classifier reads SQL only from calls spelled ``read_sql``/``execute``."""


class Triggers:
    """Decides from raw text whether the AST scan is needed, and which dotted names are worth matching."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        needs: list[_Need] = []
        self.any_dynamic = self.any_sql = self.any_magic = self.any_remote = False
        roots: set[str] = set()
        lasts: set[str] = set()
        middles: set[str] = set()
        root_prefixes: list[str] = []
        self.always = False
        for rule in rules:
            match = rule.match
            self.any_dynamic |= bool(match.dynamic)
            self.any_sql |= bool(match.sql)
            self.any_magic |= bool(match.magics) or bool(match.references)
            self.any_remote |= bool(match.remote_schemes)
            for pattern in (*match.references, *match.imports):
                need = _need(pattern)
                if not need.words and not need.prefixes:
                    self.always = True
                needs.append(need)
                first = pattern.split(".")[0].replace("()", "")
                last = pattern.split(".")[-1].replace("()", "")
                if not _WILDCARD.search(first):
                    roots.add(first)
                elif first != "*" and _WILDCARD.search(first) and first[: _WILDCARD.search(first).start()]:  # type: ignore[union-attr]
                    root_prefixes.append(first[: _WILDCARD.search(first).start()])  # type: ignore[union-attr]
                elif not _WILDCARD.search(last):
                    lasts.add(last)
                elif need.words:  # ``*.subprocess.*``: a name holding one of its literal parts
                    middles.update(need.words)
                else:
                    self.always = True
        self._needs = tuple(needs)
        self._needs_by_word: dict[str, list[_Need]] = {}
        """Each need under one of its words (a need is met only if all its words are there)."""
        for need in needs:
            if need.words:
                self._needs_by_word.setdefault(min(need.words), []).append(need)
        self._wordless_needs = tuple(need for need in needs if not need.words)
        self._wordless_prefixes = tuple(prefix for need in self._wordless_needs for prefix in need.prefixes)
        self._roots = frozenset(roots)
        self._lasts = frozenset(lasts)
        self._middles = frozenset(middles)
        self._root_prefixes = tuple(root_prefixes)
        prefixes = sorted({prefix for need in needs for prefix in need.prefixes}, key=len, reverse=True)
        self._prefixes = tuple(prefixes)
        every_prefix = sorted({*prefixes, *(SQL_PREFIXES if self.any_sql else ())})
        self._any_prefix_re = (
            re.compile("\n((?:" + "|".join(map(re.escape, every_prefix)) + ")[^\n]*)")
            if every_prefix
            else None
        )
        """Finds, in words each after a line break, those that start with a prefix (the pattern starts with
        a fixed character, so the engine goes from one line break to the next in C)."""
        self._resolving = RESOLVING_WORDS if (needs or self.any_dynamic or self.any_magic) else frozenset()

    def local(self, text: str) -> bool:
        """Whether ``text`` holds something found without words: IPython syntax or a remote path."""
        if IPYTHON_SYNTAX.search(text):
            return True
        return self.any_remote and REMOTE_HINT.search(text) is not None and IO_WORD.search(text) is not None

    def active(self, words: set[str] | frozenset[str], aliases: Mapping[str, str]) -> Active | None:
        """The active words of a cell whose words are ``words``; None when no rule can match by name."""
        expand: dict[str, frozenset[str]] = {}
        for name in words & aliases.keys():
            expand[name] = frozenset(_components(aliases[name]))
        for name in words & SYNONYMS.keys():
            expand[name] = expand.get(name, frozenset()) | SYNONYMS[name]
        every = set(words)
        for extra in expand.values():
            every |= extra
        if self.always:
            return Active(frozenset(every), frozenset(words), expand, always=True, names=frozenset(every))
        names, sql_words = self._matched(every)
        found = names | sql_words
        if not found:
            return None
        search = found & words
        search.update([word for word, extra in expand.items() if not extra.isdisjoint(found)])
        return Active(
            frozenset(found),
            frozenset(search),
            {name: extra & found for name, extra in expand.items() if extra & found},
            names=frozenset(names),
        )

    def _matched(self, words: set[str] | frozenset[str]) -> tuple[set[str], set[str]]:
        """The words that take part in a rule the words could meet: through names, and through SQL
        call names (which count only where they are spelled, not through bindings)."""
        found: set[str] = set(words & self._resolving)
        # The few words that start with a prefix (of a need or a SQL call): one pass over all words.
        prefixed = self._any_prefix_re.findall("\n" + "\n".join(words)) if self._any_prefix_re else []
        present = self._prefixes_in(prefixed)
        sql: set[str] = set()
        if self.any_sql:
            sql = set(words & SQL_WORDS)
            sql.update([word for word in prefixed if word.startswith(SQL_PREFIXES)])
        for need in self._needs:
            if need.words <= words and all(prefix in present for prefix in need.prefixes):
                found |= need.words
                if need.prefixes:
                    found.update([word for word in prefixed if word.startswith(need.prefixes)])
        return found, sql

    def _prefixes_in(self, words: Iterable[str]) -> set[str]:
        """The needs' prefixes that start some word."""
        words = tuple(words)
        return {prefix for prefix in self._prefixes if any(word.startswith(prefix) for word in words)}

    def met(self, words: set[str] | frozenset[str]) -> bool:
        """Whether ``words`` (active words of one statement and what its names stand for) can match."""
        if not words.isdisjoint(self._resolving):
            return True
        if self.any_sql and (
            not words.isdisjoint(SQL_WORDS) or any(w.startswith(SQL_PREFIXES) for w in words)
        ):
            return True
        present: set[str] | None = None
        for word in words:
            for need in self._needs_by_word.get(word, ()):
                if need.words <= words:
                    if not need.prefixes:
                        return True
                    if present is None:
                        present = self._prefixes_in(words)
                    if all(p in present for p in need.prefixes):
                        return True
        if self._wordless_needs and any(word.startswith(self._wordless_prefixes) for word in words):
            present = self._prefixes_in(words) if present is None else present
            return any(all(p in present for p in need.prefixes) for need in self._wordless_needs)
        return False

    def worth_scanning(self, cell: str, aliases: Mapping[str, str]) -> bool:
        """False only when no rule can match: no trigger word, no IPython syntax, no remote path."""
        text = _nfkc(cell)
        if self.always or self.local(text):
            return True
        return self.active(set(WORD.findall(text)), aliases) is not None

    def could_match(self, dotted: str) -> bool:
        """Cheap pre-check before running the rules' regular expressions on a dotted name."""
        if self.always:
            return True
        root, _, _ = dotted.partition(".")
        root = root.replace("()", "")
        if root in self._roots or (self._root_prefixes and root.startswith(self._root_prefixes)):
            return True
        if dotted.rpartition(".")[2].replace("()", "") in self._lasts:
            return True
        return bool(self._middles) and not self._middles.isdisjoint(_components(dotted))


def _nfkc(text: str) -> str:
    """Python reads identifiers NFKC-normalised (fullwidth ``os`` is ``os``); so must the word test."""
    return text if text.isascii() else unicodedata.normalize("NFKC", text)
