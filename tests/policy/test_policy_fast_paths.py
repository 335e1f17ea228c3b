"""Each shortcut of the classifier against the slow thing it replaces.

* the SQL pre-check (skip the tree walk when no token can name cardholder data), the reused
  tokenizer/parser, the one-pass walk and the glob regex, against the straightforward analysis
  (``sqlglot.parse`` + ``find_all`` + ``fnmatchcase`` + ``.sql()``), on adversarial SQL in several dialects;
* word sets, name look-ups and binding sites of :class:`~governed_kernel.policy.chunks.Words` against
  the word pattern and against what Python's parser binds;
* the fixed-character passes for IPython syntax and remote hints against the single patterns.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Iterator
from fnmatch import fnmatchcase

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from governed_kernel.policy import Classifier, load_policy
from governed_kernel.policy.chunks import WORD, Chunks, Words, split
from governed_kernel.policy.matchers import (
    IPYTHON_SYNTAX,
    REMOTE_HINT,
    ipython_syntax_offsets,
    remote_hint_offsets,
)
from governed_kernel.policy.model import PLACEHOLDER, DataRules
from governed_kernel.policy.sql import SQL_COMPILED, SqlFinding, SqlRules
from governed_kernel.resources import policies_dir

CLASSIFIER = Classifier(load_policy(policies_dir() / "pci-dss.yaml"))

# --- SQL -------------------------------------------------------------------------------------------------

_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Copy)
_DDL = (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable, exp.Grant, exp.Revoke)
_HARMLESS = (exp.Describe, exp.Show, exp.Use, exp.Set, exp.Pragma, exp.Transaction, exp.Commit, exp.Rollback)
_HARMLESS_COMMANDS = {"SHOW", "USE", "SET", "BEGIN", "COMMIT", "ROLLBACK", "START", "DESC", "DESCRIBE"}


def _reference(data: DataRules, sql: str) -> tuple[SqlFinding, ...]:
    """The analysis without any shortcut (as it was before the pre-check)."""
    tables = [p.lower() for p in data.cardholder_tables]
    columns = [p.lower() for p in data.cardholder_columns]

    def table_names(table: exp.Table) -> list[str]:
        parts = [part.lower() for part in (table.catalog, table.db, table.name) if part]
        return [".".join(parts[i:]) for i in range(len(parts))]

    def is_table(table: exp.Table) -> bool:
        return any(fnmatchcase(n, p) for n in table_names(table) for p in tables)

    def is_column(name: str) -> bool:
        return any(fnmatchcase(name.lower(), p) for p in columns)

    def column_names(statement: exp.Expression) -> Iterator[str]:
        for column in statement.find_all(exp.Column, exp.ColumnDef):
            if column.name and not column.name.startswith(PLACEHOLDER):
                yield column.name

    def target_of(statement: exp.Expression) -> exp.Table | None:
        if isinstance(statement, (exp.TruncateTable, exp.Drop)):
            found = statement.args.get("tables") or statement.expressions or [statement.this]
            tables_ = [e for e in found if isinstance(e, exp.Table)]
            return tables_[0] if tables_ else None
        node = statement.this
        if isinstance(node, exp.Schema):
            node = node.this
        return node if isinstance(node, exp.Table) else None

    def one(statement: exp.Expression) -> Iterator[SqlFinding]:
        if isinstance(statement, exp.Command):
            keyword = str(statement.this).upper()
            rest = statement.expression.name if isinstance(statement.expression, exp.Expression) else ""
            if keyword == "EXPLAIN" and rest:
                yield from analyze(rest)
            elif keyword not in _HARMLESS_COMMANDS:
                yield SqlFinding("unresolved", f"a {keyword} statement that cannot be checked")
            return
        if isinstance(statement, _HARMLESS):
            return
        if not isinstance(statement, (exp.Query, *_DML, *_DDL)) and not statement.find(exp.Table):
            yield SqlFinding("unresolved", f"text that is not a SQL statement ({statement.sql()[:40]})")
            return
        ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
        target = target_of(statement) if isinstance(statement, _DML + _DDL) else None
        verb = type(statement).__name__.upper().replace("TRUNCATETABLE", "TRUNCATE")
        if target is not None:
            kind = "cardholder_ddl" if isinstance(statement, _DDL) else "cardholder_dml"
            name = target.sql()
            if PLACEHOLDER in name:
                yield SqlFinding("unresolved", f"{verb} on a table whose name is only known at run time")
            elif is_table(target):
                yield SqlFinding(kind, f"{verb} on cardholder table {name}")
            else:
                changed = [c for c in column_names(statement) if is_column(c)]
                if changed:
                    yield SqlFinding(kind, f"{verb} touching cardholder column {changed[0]} of {name}")
        for table in statement.find_all(exp.Table):
            if table is target or (not table.db and table.name.lower() in ctes):
                continue
            name = table.sql()
            if PLACEHOLDER in name:
                yield SqlFinding("unresolved", "reads a table whose name is only known at run time")
            elif is_table(table):
                yield SqlFinding("cardholder_read", f"reads cardholder table {name}")
        if target is None:
            for column in column_names(statement):
                if is_column(column):
                    yield SqlFinding("cardholder_read", f"reads cardholder column {column}")
                    break

    def analyze(sql: str) -> tuple[SqlFinding, ...]:
        text = re.sub(r"%\(\w+\)s|%s", "?", sql)
        try:
            statements = sqlglot.parse(text, dialect=data.sql_dialect)
        except SqlglotError as error:
            details = getattr(error, "errors", None) or [{"description": str(error).splitlines()[0]}]
            first = str(details[0].get("description", ""))[:80]
            return (SqlFinding("unresolved", f"SQL that does not parse ({first})"),)
        found: list[SqlFinding] = []
        for statement in statements:
            if isinstance(statement, exp.Expression):
                found.extend(one(statement))
        return tuple(dict.fromkeys(found))

    return analyze(sql)


# Strings that try to slip a cardholder table or column past a check on names, and clean ones.
ADVERSARIAL_SQL = [
    "SELECT id, merchant, total FROM orders WHERE day = ?",
    "SELECT region, count(*) FROM stores WHERE year = gk_param_1 GROUP BY 1",
    "INSERT INTO report_runs (name) VALUES (?)",
    "SELECT * FROM cards",
    "select * from CARDS",
    'SELECT * FROM "Cards"',
    "SELECT * FROM `cards`",
    "SELECT * FROM [cards]",
    "SELECT * FROM payments.card_vault",
    "SELECT * FROM prod.payments.pan_tokens",
    'SELECT * FROM "payments"."card_vault"',
    "SELECT * FROM `proj.ds.cards`",
    "SELECT * FROM `proj`.ds.`pans`",
    "SELECT * FROM a.b.c.cards",
    "SELECT * FROM a.b.c.d",
    "SELECT * FROM x..cards",
    "SELECT * FROM x..orders",
    "SELECT pan FROM t",
    "SELECT t.pan FROM t",
    'SELECT "PAN" FROM t',
    "SELECT `Pan` FROM t",
    "SELECT car/**/d FROM t",
    "SELECT * FROM ca/*x*/rds",
    "SELECT * FROM card--x\n_vault",
    "SELECT * FROM /* cards */ orders",
    "SELECT * FROM orders -- pan\n",
    'SELECT * FROM U&"card\\0073"',
    'SELECT * FROM U&"ord\\0065rs"',
    'SELECT * FROM "ca""rds"',
    "SELECT * FROM 'cards.csv'",
    "SELECT * FROM read_csv('card_dump.csv')",
    "SELECT * FROM 'orders.csv'",
    "WITH c AS (SELECT * FROM cards) SELECT * FROM c",
    "WITH cards AS (SELECT 1 AS n) SELECT n FROM cards",
    "SELECT * FROM v_customer_summary",
    "SELECT * FROM orders AS card",
    "SELECT cards.x FROM orders AS cards",
    "DELETE FROM card_vault",
    "UPDATE customers SET pan = NULL",
    "INSERT INTO t (cvv) VALUES (1)",
    "INSERT INTO summary SELECT count(*) FROM cards",
    "DROP TABLE pan_archive",
    "TRUNCATE TABLE cardholders",
    "ALTER TABLE cards ADD COLUMN x INT",
    "CREATE TABLE t (pan TEXT)",
    "CREATE VIEW v AS SELECT pan FROM t",
    "MERGE INTO cards USING s ON cards.id = s.id WHEN MATCHED THEN DELETE",
    "COPY cards FROM 'x.csv'",
    "GRANT SELECT ON cards TO bob",
    "EXPLAIN SELECT * FROM cards",
    "EXPLAIN SELECT * FROM orders",
    "CALL refresh_cards()",
    "VACUUM",
    "SHOW TABLES",
    "SELEC * FORM orders",
    "SELECT * FROM",
    "SELECT * FROM orders WHERE note = 'pan'",
    "SELECT * FROM gk_param_0",
    "SELECT * FROM orders gk_param_1",
    "SELECT * FROM GK_PARAM_2",
    "SELECT * FROM orders; SELECT * FROM cards",
    "hello world",
    "select x from orders where y in (select cvv from t)",
    "SELECT COUNT(*) FROM pans",
    "SELECT * FROM japan_sales",
    "SELECT name FROM company",
    "SELECT * FROM \uff43\uff41\uff52\uff44\uff53",
    "SELECT * FROM orders WHERE x = 'a\\'b'",
    "SELECT * FROM orders, LATERAL (SELECT pan FROM t) x",
    "SELECT * FROM orders PIVOT (SUM(x) FOR y IN ('pan'))",
    "SELECT * FROM TABLE(cards_fn())",
    "SELECT @pan FROM t",
    "SELECT $1 FROM t",
    "SELECT :pan FROM t",
    "DESCRIBE cards",
    "USE payments",
    "SET x = 1",
    "SELECT 1.5e3, .5 FROM orders",
]
DIALECTS = [None, "postgres", "bigquery", "tsql", "duckdb", "snowflake", "mysql"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_sql_shortcuts_find_what_the_full_analysis_finds(dialect: str | None) -> None:
    data = DataRules(sql_dialect=dialect)
    rules = SqlRules(data)
    for sql in ADVERSARIAL_SQL:
        assert rules.analyze(sql) == _reference(data, sql), (dialect, sql)


def test_sql_precheck_skips_only_clean_strings() -> None:
    rules = SqlRules(DataRules())
    tokenizer, _ = rules._tools()
    assert not rules._may_name_cardholder_data(tokenizer.tokenize("SELECT id, total FROM orders WHERE d = ?"))
    assert not rules._may_name_cardholder_data(tokenizer.tokenize("SELECT car/**/d FROM company"))
    for sql in (
        "SELECT * FROM x.cards",
        "SELECT p.pan FROM t p",
        'SELECT * FROM "CARDS"',
        "SELECT * FROM a.b.c.cvv",
        "SELECT * FROM x..pan",
        "SELECT * FROM 'pans.csv'",
    ):
        assert rules._may_name_cardholder_data(tokenizer.tokenize(sql)), sql
    # No token holds the longest literal part of any pattern (``card``, ``pan``, ``cvv``…): no name
    # sqlglot builds from them can match, however long the dotted run.
    for sql in ("SELECT * FROM a.b.c.d", "SELECT * FROM x..y"):
        assert not rules._may_name_cardholder_data(tokenizer.tokenize(sql)), sql
    assert SqlRules(DataRules(cardholder_tables=("*",)))._literals is None
    assert SqlRules(DataRules(cardholder_tables=("vault.*",)))._literals is None


def test_custom_patterns_across_dots_are_not_skipped() -> None:
    """A policy pattern may only match a qualified name (``vault.*``): the pre-check joins parts."""
    data = DataRules(cardholder_tables=("vault.*",), cardholder_columns=("secret?",))
    rules = SqlRules(data)
    for sql in (
        "SELECT * FROM vault.accounts",
        "SELECT * FROM cat.vault.accounts",
        "SELECT secret1 FROM t",
        "SELECT * FROM accounts",
        "SELECT * FROM `vault.accounts`",
    ):
        for dialect in (None, "bigquery"):
            data_d = DataRules(
                cardholder_tables=("vault.*",), cardholder_columns=("secret?",), sql_dialect=dialect
            )
            assert SqlRules(data_d).analyze(sql) == _reference(data_d, sql), (dialect, sql)
    assert rules.analyze("SELECT * FROM vault.accounts")[0].kind == "cardholder_read"


def test_compiled_sqlglot_is_detected() -> None:
    import sqlglot.parser

    assert SQL_COMPILED is not sqlglot.parser.__file__.endswith(".py")


# --- words and binding sites -------------------------------------------------------------------------------

_ALPHABET = "ab_x1 0\n\t.,=:()#'\"\\é9Zé_"


def _chunks(text: str) -> Chunks:
    starts = [0] + [m.end() for m in re.finditer("\n", text) if m.end() < len(text)]
    lines = list(range(len(starts)))
    ends = [*starts[1:], len(text)]
    return Chunks(text, starts, lines, [text[a:b] for a, b in zip(starts, ends, strict=True)])


def test_words_are_those_of_the_word_pattern() -> None:
    rng = random.Random(11)
    for _ in range(400):
        text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 60)))
        if rng.random() < 0.5:
            text = text.replace("é", "e")  # ASCII texts take the fast path
        chunks = _chunks(text)
        words = Words(chunks)
        assert words.all() == set(WORD.findall(text)), text
        ends = [*chunks.starts[1:], len(text)]
        for index, (start, end) in enumerate(zip(chunks.starts, ends, strict=True)):
            assert words.of(index) == set(WORD.findall(text, start, end)), (text, index)
        for name in words.all():
            holding = {i for i in range(len(chunks.starts)) if name in words.of(i)}
            assert holding <= words.where([name]), (text, name)


BINDINGS = [
    "x = os",
    "x: int = os",
    "(x) = os",
    "((x)) = os",
    "a = x = os",
    "print((x := os))",
    "x = \\\n    os",
    "(x  # a comment\n) = os",
    "(x\n:= os)",
    "print((x\n\\\n:= os))",
    "s = 'a#'; x = os",
    't = "#="; x = os',
    "if True: x = os",
    "for i in []:\n    x = os",
    "def f():\n    x = os",
    "x=os",
    "x :int=os",
    "(x  # c\n# d\n) = os",
    "with open(p) as fh: x = os",
    "é = os",
    "x1 = os",
    "_x = os",
    "y = [x := os]",
    "import sys; s = '#'; x = os",
    "import sys  # note\nx = os",
    "import sys as x  # a = b",
    "f(a, x=1); x = os",
    "print(a, (x := os))",
    "a, b = x = os, 1",
    "s = '(x #'; x = os",
    "s = ', x #'; x = os",
]


@pytest.mark.parametrize("code", BINDINGS)
def test_binding_sites_cover_what_python_binds(code: str) -> None:
    cell = f"a = 1\n{code}\nb = 2\n"
    chunks = split(cell)
    assert chunks is not None
    words = Words(chunks)
    for index, source in enumerate(chunks.sources):
        tree = ast.parse(source)
        bound = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and isinstance(node.target, ast.Name):
                bound.add(node.target.id)
        assert bound <= words.bound(index), (source, bound, words.bound(index))
        assert words.bound(index) <= words.bindable()
        for name in bound:
            assert index in words.binders(name)


def test_keyword_arguments_and_import_comments_are_not_bindings() -> None:
    cell = (
        "import os  # compute the fraud rate\nf(a, rate=1, fraud=2)\n"
        "fig, ax = plt.subplots(figsize=(10, 4))\n"
    )
    chunks = split(cell)
    assert chunks is not None
    words = Words(chunks)
    assert words.bound(0) == {"os"}
    assert words.bound(1) == set()
    assert words.bound(2) == set()  # ``fig, ax`` is a tuple target, ``figsize`` a keyword argument


def test_fixed_character_passes_find_every_match() -> None:
    rng = random.Random(5)
    alphabet = "ab =!%?/,;\n\t :'\"#\\rbfU\x0b\x1c"
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        assert {m.start() for m in IPYTHON_SYNTAX.finditer(text)} <= set(ipython_syntax_offsets(text)), text
        assert {m.start() for m in REMOTE_HINT.finditer(text)} <= set(remote_hint_offsets(text)), text


# --- whole cells --------------------------------------------------------------------------------------------

FRAGMENTS = [
    "x = os",
    "s = 'a#'; y = os",
    "(z  # c\n) = subprocess",
    "print((w\n:= os))",
    "q = 'SELECT pan FROM cards'",
    "r = 'SELECT id FROM orders'",
    "df = pd.read_csv('x.csv')",
    "total = df['amount'].sum()",
    "x.system('id')",
    "y.popen('id')",
    "z.run(['ls'])",
    "w.system('id')",
    "cur.execute(q)",
    "cur.execute(r)",
    "import os",
    "import subprocess as sp",
    "sp.run(['ls'])",
    "# x = os",
    "h = '''\nx = os\n'''",
    "def f(a=os):\n    return a.system('id')",
    "@decorator\ndef g():\n    pass",
    "k = 1 \\\n    + 2",
    "u = 1 if x else y",
    "v = 0x1f",
    "print('#', 'x = os')",
    "n: int = 3",
    "m = {'a': os}",
    "m['a'].system('id')",
]


def test_random_cells_decide_as_the_whole_cell_scan() -> None:
    rng = random.Random(17)
    for _ in range(250):
        cell = "\n".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(2, 14))) + "\n"
        incremental = CLASSIFIER.classify_uncached(cell)
        whole = CLASSIFIER.classify_whole(cell)
        if whole.notes and "SyntaxError" in whole.notes[0]:
            continue  # a cell that does not compile runs nothing (see test_policy_incremental)
        assert (incremental.action, incremental.findings) == (whole.action, whole.findings), cell


PLACEHOLDER_SQL = [
    "SELECT * FROM gk_param_0",
    "SELECT * FROM orders gk_param_1",
    "SELECT * FROM orders AS o WHERE x = gk_param_2",
    "SELECT * FROM s.gk_param_3",
    'SELECT * FROM "gk_param_4"',
    "SELECT * FROM read_csv(gk_param_5)",
    "DELETE FROM gk_param_6 WHERE a = 1",
    "INSERT INTO gk_param_7 (a) VALUES (1)",
    "UPDATE t SET a = gk_param_8",
    "SELECT * FROM orders TABLESAMPLE (gk_param_9 ROWS)",
    "SELECT * FROM orders FOR SYSTEM_TIME AS OF gk_param_10",
    'SELECT * FROM U&"gk\\005fparam"',
    "SELECT * FROM (SELECT gk_param_11 FROM t) AS q",
]


@pytest.mark.parametrize("dialect", [None, "postgres", "tsql", "bigquery"])
def test_placeholder_shortcut_matches_the_rendered_sql(dialect: str | None) -> None:
    data = DataRules(sql_dialect=dialect)
    rules = SqlRules(data)
    for sql in PLACEHOLDER_SQL:
        assert rules.analyze(sql) == _reference(data, sql), (dialect, sql)


def test_met_depends_only_on_the_word_set() -> None:
    """The classifier asks :meth:`Triggers.met` once per distinct word set of a cell (frozen): the answer
    must not depend on the set's type or on the order the words were added in."""
    triggers = Classifier(load_policy(policies_dir() / "pci-dss.yaml")).triggers
    vocabulary = [
        "os",
        "system",
        "subprocess",
        "run",
        "read_sql",
        "execute",
        "requests",
        "get",
        "exec",
        "popen",
        "path",
        "join",
        "df",
        "pd",
        "sql",
        "to_sql",
        "ctypes",
        "get_ipython",
        "kernel",
    ]
    rng = random.Random(11)
    for _ in range(500):
        words = rng.sample(vocabulary, rng.randint(1, 5))
        assert triggers.met(set(words)) == triggers.met(frozenset(reversed(words))), words


def test_the_bindings_shortcut_decides_as_the_full_closure(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_bindings_pass_nothing`` skips the closure over bindings when no binding can make a statement
    meet a rule; with the closure always worked out, every decision is the same."""
    rng = random.Random(29)
    cells = ["\n".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(2, 14))) + "\n" for _ in range(200)]
    fast = [CLASSIFIER.classify_uncached(cell) for cell in cells]
    monkeypatch.setattr(Classifier, "_bindings_pass_nothing", staticmethod(lambda *args: False))
    for cell, decided in zip(cells, fast, strict=True):
        assert CLASSIFIER.classify_uncached(cell) == decided, cell


@pytest.mark.parametrize(
    "use",
    [
        "globals()['a' 'b'].system('id')",
        "vars()['\\x61b'].system('id')",
        "globals()[b'ab'].system('id')",
        "x = globals()['a' 'b']\nx.system('id')",
    ],
)
def test_names_reached_through_strings_the_text_does_not_show(use: str) -> None:
    """A statement reads the variables its strings name (``globals()[key]``): the binders of a name
    written with escapes or split across literals are read too (the words of the text do not show it)."""
    cell = f"ab = os\ny = 1\n{use}\n"
    incremental = CLASSIFIER.classify_uncached(cell)
    assert incremental == CLASSIFIER.classify_whole(cell)
    assert incremental.action == "approve" and "os.system" in {f.subject for f in incremental.findings}
