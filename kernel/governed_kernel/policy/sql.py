"""SQL rules: parse the statement with sqlglot and say whether it reads or changes cardholder data.

Parsed, not grepped: ``SELECT card_count FROM orders`` is not a cardholder read, a CTE named ``cards``
is not a table, and ``DELETE FROM card_vault`` is a change even when written in lower case across lines.
Parts of the text only known at run time (f-string fields, ``%s`` parameters) arrive here as the
placeholder identifier :data:`PLACEHOLDER`; a table name built from one cannot be checked, so it is
reported as ``unresolved``.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import translate

import sqlglot
import sqlglot.parser
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError
from sqlglot.parser import Parser
from sqlglot.tokens import Token, Tokenizer, TokenType  # type: ignore[attr-defined]

from governed_kernel.policy.model import PLACEHOLDER, DataRules

SQL_COMPILED = not sqlglot.parser.__file__.endswith(".py")
"""Whether sqlglot runs compiled (the ``sqlglotc`` wheel: the same modules built with mypyc, installed
into the ``sqlglot`` package, where Python prefers them over the ``.py`` files; same version, same
results, several times faster). Without a wheel for the platform the pure-Python modules run."""

# sqlglot warns on stderr when it falls back to an opaque Command; a notebook user should not see that.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

_DBAPI_PARAMS = re.compile(r"%\(\w+\)s|%s")
_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Copy)
_DDL = (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable, exp.Grant, exp.Revoke)
_HARMLESS_STATEMENTS = (
    exp.Describe,
    exp.Show,
    exp.Use,
    exp.Set,
    exp.Pragma,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
)
_HARMLESS_COMMANDS = {"SHOW", "USE", "SET", "BEGIN", "COMMIT", "ROLLBACK", "START", "DESC", "DESCRIBE"}


@dataclass(frozen=True)
class SqlFinding:
    """``kind`` is one of ``cardholder_read``, ``cardholder_dml``, ``cardholder_ddl``, ``unresolved``."""

    kind: str
    detail: str


class SqlRules:
    """The cardholder patterns of one policy, compiled once; ``analyze`` is cached per SQL text."""

    def __init__(self, data: DataRules) -> None:
        self._tables = _globs(data.cardholder_tables)
        self._columns = _globs(data.cardholder_columns)
        self._literals = _necessary_literals([*data.cardholder_tables, *data.cardholder_columns])
        self._dialect = data.sql_dialect
        self.analyze = functools.lru_cache(maxsize=512)(self._analyze)
        self._local = threading.local()

    def is_cardholder_table(self, table: exp.Table | str) -> bool:
        names = [table.lower()] if isinstance(table, str) else _table_names(table)
        return self._tables is not None and any(self._tables.match(name) for name in names)

    def is_cardholder_column(self, name: str) -> bool:
        return self._columns is not None and self._columns.match(name.lower()) is not None

    def table_access(self, table: str, kind: str, verb: str) -> list[SqlFinding]:
        """``read_sql_table``/``to_sql`` name a table directly instead of sending SQL."""
        if PLACEHOLDER in table:
            return [SqlFinding("unresolved", f"{verb} a table whose name is only known at run time")]
        if self.is_cardholder_table(table):
            return [SqlFinding(kind, f"{verb} cardholder table {table}")]
        return []

    def _analyze(self, sql: str) -> tuple[SqlFinding, ...]:
        text = _DBAPI_PARAMS.sub("?", sql)
        tokenizer, parser = self._tools()
        try:
            # What ``sqlglot.parse(text, dialect=...)`` does, with this thread's tokenizer and parser.
            tokens = tokenizer.tokenize(text)
            statements = parser.parse(tokens, text)
        except SqlglotError as error:
            details = getattr(error, "errors", None) or [{"description": str(error).splitlines()[0]}]
            first = str(details[0].get("description", ""))[:80]
            return (SqlFinding("unresolved", f"SQL that does not parse ({first})"),)
        # Generated SQL holds the placeholder only if the text does, up to case and escapes (``\\``,
        # ``U&"..."``); otherwise rendering each table's SQL to look for it can be skipped.
        may_hold_placeholder = PLACEHOLDER in text.lower() or "\\" in text or "&" in text
        walk = may_hold_placeholder or self._may_name_cardholder_data(tokens)
        findings: list[SqlFinding] = []
        for statement in statements:
            if isinstance(statement, exp.Expression):
                findings.extend(self._statement(statement, may_hold_placeholder, walk))
        return tuple(dict.fromkeys(findings))

    def _tools(self) -> tuple[Tokenizer, Parser]:
        """This thread's tokenizer and parser for the policy's dialect (both reset on every use; making
        them anew for every string costs more than a short query takes to parse)."""
        tools: tuple[Tokenizer, Parser] | None = getattr(self._local, "tools", None)
        if tools is None:
            dialect = Dialect.get_or_raise(self._dialect)
            tools = self._local.tools = (dialect.tokenizer(), dialect.parser())
        return tools

    def _may_name_cardholder_data(self, tokens: list[Token]) -> bool:
        """Whether any table or column the parser can build from ``tokens`` may match a cardholder pattern.

        Every name in sqlglot's tree is the text of a token (identifiers, quoted or not, with escapes
        already resolved; keywords used as names; string literals used as tables) or, for tables, the
        dotted join of up to three such names. So each token text is tested as a column and, split at
        dots and joined with its neighbours across ``.`` tokens, every run of up to three parts as a
        table. Longer runs or ``..`` are not analysed here (answer: may). False means the walk over the
        tree cannot find a cardholder table or column and is skipped; the parse itself is not (SQL that
        does not parse, or is not a statement, is still reported as unresolved).
        """
        literals = self._literals
        if literals is not None:
            # A name matches a pattern only if it holds the pattern's longest literal part, which has no
            # dot, so it lies inside one token's text: none of them in any token, no match anywhere.
            joined = "\x00".join([token.text for token in tokens]).lower()
            if not any(literal in joined for literal in literals):
                return False
        run: list[str] = []  # the parts of the current dotted run of names
        after_dot = True
        column = self._columns.match if self._columns is not None else None
        dot = TokenType.DOT
        for token in tokens:
            if token.token_type == dot:
                if after_dot:
                    return True  # ``..`` (a default schema) or a leading dot: leave it to the walk
                after_dot = True
                continue
            text = token.text.lower()
            if "." in text:
                parts = text.split(".")
                if column is not None and any(column(name) for name in (text, *parts)):
                    return True
            else:
                parts = [text]  # ``(text, *parts)`` would test the same name twice
                if column is not None and column(text):
                    return True
            if not after_dot:
                if self._run_may_match(run):
                    return True
                run = []
            run.extend(parts)
            after_dot = False
        return self._run_may_match(run)

    def _run_may_match(self, run: list[str]) -> bool:
        if len(run) > 3:
            return True
        tables = self._tables
        if len(run) == 1:  # the common case: one name
            return tables is not None and tables.match(run[0]) is not None
        return tables is not None and any(
            tables.match(".".join(run[start:end]))
            for start in range(len(run))
            for end in range(start + 1, len(run) + 1)
        )

    def _statement(
        self, statement: exp.Expression, may_hold_placeholder: bool, walk: bool = True
    ) -> Iterator[SqlFinding]:
        if isinstance(statement, exp.Command):
            keyword = str(statement.this).upper()
            rest = statement.expression.name if isinstance(statement.expression, exp.Expression) else ""
            if keyword == "EXPLAIN" and rest:
                yield from self._analyze(rest)
            elif keyword not in _HARMLESS_COMMANDS:
                yield SqlFinding("unresolved", f"a {keyword} statement that cannot be checked")
            return
        if isinstance(statement, _HARMLESS_STATEMENTS):
            return
        if not isinstance(statement, (exp.Query, *_DML, *_DDL)) and not statement.find(exp.Table):
            yield SqlFinding("unresolved", f"text that is not a SQL statement ({statement.sql()[:40]})")
            return
        if not walk:
            return  # no placeholder, and no token can name a cardholder table or column
        tables: list[exp.Table] = []
        columns: list[exp.Column | exp.ColumnDef] = []
        ctes: set[str] = set()
        for node in statement.bfs():  # one walk, in the order ``find_all`` gives (breadth first)
            if isinstance(node, exp.Table):
                tables.append(node)
            elif isinstance(node, (exp.Column, exp.ColumnDef)):
                columns.append(node)
            elif isinstance(node, exp.CTE):
                ctes.add(node.alias_or_name.lower())
        target = _target(statement) if isinstance(statement, _DML + _DDL) else None
        verb = type(statement).__name__.upper().replace("TRUNCATETABLE", "TRUNCATE")
        if target is not None:
            kind = "cardholder_ddl" if isinstance(statement, _DDL) else "cardholder_dml"
            name = target.sql() if may_hold_placeholder and _holds_placeholder(target) else ""
            if PLACEHOLDER in name:
                yield SqlFinding("unresolved", f"{verb} on a table whose name is only known at run time")
            elif self.is_cardholder_table(target):
                yield SqlFinding(kind, f"{verb} on cardholder table {name or target.sql()}")
            else:
                changed = [col for col in _column_names(columns) if self.is_cardholder_column(col)]
                if changed:
                    yield SqlFinding(
                        kind, f"{verb} touching cardholder column {changed[0]} of {name or target.sql()}"
                    )
        for table in tables:
            if table is target or (not table.db and table.name.lower() in ctes):
                continue
            # A table's SQL can hold the placeholder only if the text may and one of its names does.
            name = table.sql() if may_hold_placeholder and _holds_placeholder(table) else ""
            if PLACEHOLDER in name:
                yield SqlFinding("unresolved", "reads a table whose name is only known at run time")
            elif self.is_cardholder_table(table):
                yield SqlFinding("cardholder_read", f"reads cardholder table {name or table.sql()}")
        if target is None:
            for column in _column_names(columns):
                if self.is_cardholder_column(column):
                    yield SqlFinding("cardholder_read", f"reads cardholder column {column}")
                    break


def _holds_placeholder(node: exp.Expression) -> bool:
    """Whether a name or value under ``node`` holds the placeholder (as its SQL would), or the text
    has escapes (then only the SQL can tell)."""
    for child in node.walk():
        for value in child.args.values():
            if isinstance(value, str) and (PLACEHOLDER in value.lower() or "\\" in value or "&" in value):
                return True
            if isinstance(value, exp.Expression) and not isinstance(
                value, (exp.Identifier, exp.Literal, exp.TableAlias, exp.Table, exp.Dot, exp.Var)
            ):
                return True  # something else under the table (a function, a subquery): ask the SQL
    return False


def _table_names(table: exp.Table) -> list[str]:
    parts = [part.lower() for part in (table.catalog, table.db, table.name) if part]
    return [".".join(parts[index:]) for index in range(len(parts))]


def _target(statement: exp.Expression) -> exp.Table | None:
    if isinstance(statement, (exp.TruncateTable, exp.Drop)):
        found = statement.args.get("tables") or statement.expressions or [statement.this]
        tables = [e for e in found if isinstance(e, exp.Table)]
        return tables[0] if tables else None
    node = statement.this
    if isinstance(node, exp.Schema):
        node = node.this
    return node if isinstance(node, exp.Table) else None


def _globs(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One regular expression for glob patterns: ``.match`` on lower-cased text is ``fnmatchcase`` with
    any of them."""
    parts = [f"(?:{translate(pattern.lower())})" for pattern in patterns]
    return re.compile("|".join(parts)) if parts else None


_GLOB_WILDCARDS = re.compile(r"[*?]")


def _necessary_literals(patterns: Iterable[str]) -> tuple[str, ...] | None:
    """For each glob, its longest literal part (text between ``*`` and ``?``), which every name it
    matches holds; None when some glob has none, a ``[...]`` class (``[]]``, ``[!]]``: not worth the
    parsing) or a literal part with a dot or a NUL (then the test on token texts in
    :meth:`SqlRules._may_name_cardholder_data` would not be exact)."""
    literals: set[str] = set()
    for pattern in patterns:
        if "[" in pattern:
            return None
        longest = max(_GLOB_WILDCARDS.split(pattern.lower()), key=len)
        if not longest or "." in longest or "\x00" in longest:
            return None
        literals.add(longest)
    return tuple(
        sorted(
            literal
            for literal in literals  # ``_pan`` is there only if ``pan`` is
            if not any(other in literal for other in literals if other != literal)
        )
    )


def _column_names(columns: list[exp.Column | exp.ColumnDef]) -> Iterator[str]:
    for column in columns:
        name = column.name
        if name and not name.startswith(PLACEHOLDER):
            yield name
