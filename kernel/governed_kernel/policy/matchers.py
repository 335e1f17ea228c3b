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

DYNAMIC_WORDS = frozenset({
    "exec", "eval", "compile", "__import__", "import_module", "getattr", "__dict__", "vars", "globals",
    "__builtins__", "builtins", "run_cell", "run_cell_async", "ex", "ev", "run_code", "run_line_magic",
    "run_cell_magic", "magic",
})
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
        return cls(rule, _globs(rule.match.references), _globs(rule.match.imports),
                   _globs(rule.match.magics, lower=True))

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
            return (self.magics.match(lowered.split(" ", 1)[0]) is not None
                    or self.magics.match(lowered) is not None)
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


SYNONYMS: dict[str, frozenset[str]] = {"posix": frozenset({"os"}), "nt": frozenset({"os"}),
                                       "__builtins__": frozenset({"builtins"})}
"""Module names the classifier normalises into another (``posix.system`` is ``os.system``)."""
RESOLVING_WORDS = DYNAMIC_WORDS | {"modules", "importlib"}
"""Words through which a string literal can become a name (``sys.modules['o' 's']``, ``getattr``,
``vars(x)[...]``, ``__import__``, code passed to ``exec``): the text need not contain the name itself."""
REMOTE_HINT = re.compile(r"://|\\|['\"](?:\s|#[^\n]*)*[rRbBuUfF]{0,2}['\"]")
"""``://`` in the text, or a string whose value may contain it without the text showing it (escapes,
implicitly concatenated literals)."""
IO_WORD = re.compile(r"\b(?:to_\w+|read_\w+|open|save\w*|savefig|upload\w*|put\w*|write\w*|copy\w*|"
                     r"download\w*|get_object)\b")


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
                else:
                    self.always = True
        self._needs = tuple(needs)
        self._roots = frozenset(roots)
        self._lasts = frozenset(lasts)
        self._root_prefixes = tuple(root_prefixes)
        prefixes = sorted({prefix for need in needs for prefix in need.prefixes}, key=len, reverse=True)
        self._prefixes = tuple(prefixes)
        self._prefix_re = (re.compile("^(" + "|".join(map(re.escape, prefixes)) + ")", re.MULTILINE)
                           if prefixes else None)
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
        found = self._matched(every)
        if not found:
            return None
        search = {word for word in words
                  if word in found or (word in expand and not expand[word].isdisjoint(found))}
        return Active(frozenset(found), frozenset(search),
                      {name: extra & found for name, extra in expand.items() if extra & found},
                      names=frozenset(self._matched(every, sql=False)))

    def _matched(self, words: set[str] | frozenset[str], *, sql: bool = True) -> set[str]:
        found: set[str] = set(words & self._resolving)
        present = self._prefixes_in(words)
        if sql and self.any_sql:
            found |= words & SQL_WORDS
            found.update(word for word in words if word.startswith(SQL_PREFIXES))
        for need in self._needs:
            if need.words <= words and all(prefix in present for prefix in need.prefixes):
                found |= need.words
                if need.prefixes:
                    found.update(word for word in words if word.startswith(need.prefixes))
        return found

    def _prefixes_in(self, words: set[str] | frozenset[str]) -> set[str]:
        """The needs' prefixes that start some word (one regular-expression pass over all words)."""
        if self._prefix_re is None:
            return set()
        longest = set(self._prefix_re.findall("\n".join(words)))  # the longest prefix each word starts with
        return {prefix for prefix in self._prefixes if any(found.startswith(prefix) for found in longest)}

    def met(self, words: set[str] | frozenset[str]) -> bool:
        """Whether ``words`` (active words of one statement and what its names stand for) can match."""
        if not words.isdisjoint(self._resolving):
            return True
        if self.any_sql and (not words.isdisjoint(SQL_WORDS)
                             or any(w.startswith(SQL_PREFIXES) for w in words)):
            return True
        present = self._prefixes_in(words)
        return any(need.words <= words and all(p in present for p in need.prefixes) for need in self._needs)

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
        return dotted.rpartition(".")[2].replace("()", "") in self._lasts


def _nfkc(text: str) -> str:
    """Python reads identifiers NFKC-normalised (fullwidth ``os`` is ``os``); so must the word test."""
    return text if text.isascii() else unicodedata.normalize("NFKC", text)
