"""Rules compiled for speed: one regular expression per criterion, and the words that can trigger them.

Most cells match no rule. :class:`Triggers` answers "could any rule match this cell?" from the set of
identifier-like words in the raw text, which is far cheaper than parsing; a cell with no trigger word
and no IPython syntax cannot produce a finding, so the classifier skips the AST for it. The test is
conservative: words in strings and comments count, and every criterion contributes its words.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from governed_kernel.policy.model import Rule

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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

    def worth_scanning(self, cell: str, aliases: Mapping[str, str]) -> bool:
        """False only when no rule can match: no trigger word, no IPython syntax, no URL."""
        if self.always:
            return True
        if IPYTHON_SYNTAX.search(cell):
            return True
        if self.any_remote and "://" in cell:
            return True
        words = set(WORD.findall(cell))
        for name in words & aliases.keys():
            words.update(_components(aliases[name]))
        if self.any_dynamic and not words.isdisjoint(DYNAMIC_WORDS):
            return True
        if self.any_sql and (not words.isdisjoint(SQL_WORDS)
                             or any(word.startswith(SQL_PREFIXES) for word in words)):
            return True
        return any(need.met(words) for need in self._needs)

    def could_match(self, dotted: str) -> bool:
        """Cheap pre-check before running the rules' regular expressions on a dotted name."""
        if self.always:
            return True
        root, _, _ = dotted.partition(".")
        root = root.replace("()", "")
        if root in self._roots or (self._root_prefixes and root.startswith(self._root_prefixes)):
            return True
        return dotted.rpartition(".")[2].replace("()", "") in self._lasts
