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
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from governed_kernel.policy.model import DataRules

PLACEHOLDER = "gk_param"
"""Prefix of identifiers that stand for values only known at run time."""

# sqlglot warns on stderr when it falls back to an opaque Command; a notebook user should not see that.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

_DBAPI_PARAMS = re.compile(r"%\(\w+\)s|%s")
_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Copy)
_DDL = (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable, exp.Grant, exp.Revoke)
_HARMLESS_STATEMENTS = (exp.Describe, exp.Show, exp.Use, exp.Set, exp.Pragma, exp.Transaction, exp.Commit,
                        exp.Rollback)
_HARMLESS_COMMANDS = {"SHOW", "USE", "SET", "BEGIN", "COMMIT", "ROLLBACK", "START", "DESC", "DESCRIBE"}


@dataclass(frozen=True)
class SqlFinding:
    """``kind`` is one of ``cardholder_read``, ``cardholder_dml``, ``cardholder_ddl``, ``unresolved``."""

    kind: str
    detail: str


class SqlRules:
    """The cardholder patterns of one policy, compiled once; ``analyze`` is cached per SQL text."""

    def __init__(self, data: DataRules) -> None:
        self._tables = tuple(pattern.lower() for pattern in data.cardholder_tables)
        self._columns = tuple(pattern.lower() for pattern in data.cardholder_columns)
        self._dialect = data.sql_dialect
        self.analyze = functools.lru_cache(maxsize=512)(self._analyze)

    def is_cardholder_table(self, table: exp.Table | str) -> bool:
        names = [table.lower()] if isinstance(table, str) else _table_names(table)
        return any(fnmatchcase(name, pattern) for name in names for pattern in self._tables)

    def is_cardholder_column(self, name: str) -> bool:
        lowered = name.lower()
        return any(fnmatchcase(lowered, pattern) for pattern in self._columns)

    def table_access(self, table: str, kind: str, verb: str) -> list[SqlFinding]:
        """``read_sql_table``/``to_sql`` name a table directly instead of sending SQL."""
        if PLACEHOLDER in table:
            return [SqlFinding("unresolved", f"{verb} a table whose name is only known at run time")]
        if self.is_cardholder_table(table):
            return [SqlFinding(kind, f"{verb} cardholder table {table}")]
        return []

    def _analyze(self, sql: str) -> tuple[SqlFinding, ...]:
        text = _DBAPI_PARAMS.sub("?", sql)
        try:
            statements = sqlglot.parse(text, dialect=self._dialect)
        except SqlglotError as error:
            details = getattr(error, "errors", None) or [{"description": str(error).splitlines()[0]}]
            first = str(details[0].get("description", ""))[:80]
            return (SqlFinding("unresolved", f"SQL that does not parse ({first})"),)
        findings: list[SqlFinding] = []
        for statement in statements:
            if isinstance(statement, exp.Expression):
                findings.extend(self._statement(statement))
        return tuple(dict.fromkeys(findings))

    def _statement(self, statement: exp.Expression) -> Iterator[SqlFinding]:
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
        ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
        target = _target(statement) if isinstance(statement, _DML + _DDL) else None
        verb = type(statement).__name__.upper().replace("TRUNCATETABLE", "TRUNCATE")
        if target is not None:
            kind = "cardholder_ddl" if isinstance(statement, _DDL) else "cardholder_dml"
            name = target.sql()
            if PLACEHOLDER in name:
                yield SqlFinding("unresolved", f"{verb} on a table whose name is only known at run time")
            elif self.is_cardholder_table(target):
                yield SqlFinding(kind, f"{verb} on cardholder table {name}")
            else:
                changed = [col for col in _column_names(statement) if self.is_cardholder_column(col)]
                if changed:
                    yield SqlFinding(kind, f"{verb} touching cardholder column {changed[0]} of {name}")
        for table in statement.find_all(exp.Table):
            if table is target or (not table.db and table.name.lower() in ctes):
                continue
            name = table.sql()
            if PLACEHOLDER in name:
                yield SqlFinding("unresolved", "reads a table whose name is only known at run time")
            elif self.is_cardholder_table(table):
                yield SqlFinding("cardholder_read", f"reads cardholder table {name}")
        if target is None:
            for column in _column_names(statement):
                if self.is_cardholder_column(column):
                    yield SqlFinding("cardholder_read", f"reads cardholder column {column}")
                    break


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


def _column_names(statement: exp.Expression) -> Iterator[str]:
    for column in statement.find_all(exp.Column, exp.ColumnDef):
        name = column.name
        if name and not name.startswith(PLACEHOLDER):
            yield name
