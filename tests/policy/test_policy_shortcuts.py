"""The cheaper forms of the binding-site and word-location passes give what the plain forms give."""

from __future__ import annotations

import random
import re

import pytest

from governed_kernel.policy import chunks as K

_REV_ASSIGN_REFERENCE = re.compile(r"=(?<!==)(:?)([\s\\)]*)(?:(\w*[^\W\d])(?!\w)([ \t]*[(,])?)?")
"""The binding-site pattern as first written (the name must not start with a digit)."""


def _sites_reference(reverse: str, comments: bool) -> set[str] | None:
    found: set[str] = set()
    for walrus, gap, name, before in _REV_ASSIGN_REFERENCE.findall(reverse):
        if comments and "\n" in gap:
            return None
        if name and (walrus or not before or ")" in gap):
            found.add(name[::-1])
    for gap, name in K._REV_ANNOTATED.findall(reverse):
        if comments and "\n" in gap:
            return None
        if name:
            found.add(name[::-1])
    return found


_ALPHABET = [
    "a",
    "b",
    "x1",
    " ",
    "\t",
    "\n",
    "=",
    ":",
    "(",
    ")",
    ",",
    "\\",
    "#",
    "==",
    ":=",
    "'",
    "f",
    "1",
    "\u0661",
    "\u00b2",
    "é",
    "_",
]


def test_sites_matches_the_match_by_match_loop() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 25)))
        for comments in (True, False):
            assert K._sites(text[::-1], comments) == _sites_reference(text[::-1], comments), (text, comments)


def test_where_skips_to_the_next_piece_without_losing_any() -> None:
    rng = random.Random(11)
    words = ["df", "x", "df2", "os", "a_df", "2df"]
    for _ in range(2_000):
        lines = [
            " ".join(rng.choice(words) + rng.choice(["", "=", ".", "(", " df"]) for _ in range(3))
            for _ in range(rng.randint(1, 8))
        ]
        cell = "\n".join(
            ("    " + line if i and rng.random() < 0.3 else line) for i, line in enumerate(lines)
        )
        chunks = K.split(cell + "\n")
        if chunks is None:
            continue
        found = K.Words(chunks)
        for name in ("df", "x", "os"):
            expected = {
                chunks.index_of(m.start())
                for m in re.finditer(rf"(?<![^\W\d]){re.escape(name)}(?!\w)", chunks.text)
                if not re.match(r"\w", chunks.text[m.start() - 1 : m.start()])
                or chunks.text[m.start() - 1].isdigit()
            }
            assert found.where([name]) == expected, (cell, name)


def test_cardholder_prefilter_on_dotted_and_plain_names() -> None:
    from governed_kernel.policy import load_policy
    from governed_kernel.policy.sql import SqlRules
    from governed_kernel.resources import default_policy_path

    rules = SqlRules(load_policy(str(default_policy_path())).data)
    tokens = rules._tools()[0].tokenize
    for sql, may in [
        ("SELECT id FROM orders", False),
        ("SELECT pan FROM orders", True),
        ("SELECT o.pan FROM s.orders o", True),
        ("SELECT id FROM s.card_vault", True),
        ('SELECT "a.pan" FROM t', True),
        ("SELECT id FROM a.b.c.d", False),
        ("SELECT id FROM a.b.c.pan", True),
        ("SELECT x FROM card_vault", True),
        ("SELECT a.id FROM s.t a", False),
    ]:
        assert rules._may_name_cardholder_data(tokens(sql)) is may, sql


def test_one_line_shell_escape_is_written_as_ipython_writes_it() -> None:
    from IPython.core.inputtransformer2 import TransformerManager

    from governed_kernel.policy.source import _shell_line

    manager = TransformerManager()
    alphabet = [
        *"abcz019_./*'\" \t=:@+%<>|&{}$()[]#-",
        "ls",
        " -la",
        "data/",
        "'*.csv'",
        "\\",
        "?",
        "!",
        ";",
        "é",
        "!!",
        "!=",
    ]
    prefixes = ["", "x = ", "files=", "f1 =  ", "_ =\t", "1x = ", "x.y = ", "if = ", " ", "x == "]
    rng = random.Random(5)
    handled = 0
    for _ in range(20_000):
        command = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        cell = rng.choice(prefixes) + "!" + command + rng.choice(["", "\n", "\n\n", "\nx"])
        fast = _shell_line(cell)
        if fast is None:
            continue
        handled += 1
        assert fast == manager.transform_cell(cell), cell
    assert handled > 1_000
    assert _shell_line("!ls -la data/\n") == "get_ipython().system('ls -la data/')\n"
    assert _shell_line("files = !find . -name '*.csv'\n") == (
        "files = get_ipython().getoutput(\"find . -name '*.csv'\")\n"
    )
    for other in ("!!ls", "!ls?", "  !ls", "!ls\n!pwd", "x = !!ls", "!ls \\\n -la", "if = !ls", "!=1"):
        assert _shell_line(other) is None, other


_BIND_ALPHABET = [
    "a",
    "b",
    "x1",
    "ab",
    " ",
    "\t",
    "\n",
    "=",
    ":",
    "(",
    ")",
    ",",
    "\\",
    "#",
    "==",
    ":=",
    "'",
    "1",
    "_",
    ".",
    "[",
    "]",
    "\x0b",
    "import ",
]


def test_may_bind_covers_every_binding_site() -> None:
    """``Words.may_bind`` (one substring search in a copy without gap characters) must hold for every
    name some piece may bind, and agree with the whole-text pass when that pass is what answers."""
    rng = random.Random(13)
    for _ in range(6_000):
        lines = [
            "".join(rng.choice(_BIND_ALPHABET) for _ in range(rng.randint(0, 10)))
            for _ in range(rng.randint(1, 5))
        ]
        chunks = K.split("\n".join(lines) + "\n")
        if chunks is None:
            continue
        words = K.Words(chunks)
        for index in range(len(chunks.starts)):
            for name in words.bound(index):
                assert words.may_bind(name), (chunks.text, name)
                assert index in words.binders(name), (chunks.text, name)


def test_whole_cell_syntax_check_matches_the_pattern() -> None:
    rng = random.Random(19)
    alphabet = [
        "%",
        "%%",
        ".",
        "...",
        ":",
        "In [",
        "[nav] ",
        "[ins] ",
        "1",
        "]",
        ":",
        " ",
        "\t",
        "\n",
        "x",
        ">>>",
        ">",
    ]
    for _ in range(20_000):
        cell = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        old = K._WHOLE_CELL_SYNTAX.search(cell) is not None
        assert K._whole_cell_syntax(cell) == old, cell


def test_lines_counted_on_demand_match_the_text() -> None:
    rng = random.Random(23)
    for _ in range(500):
        lines = [
            rng.choice(["x = 1", "for i in y:", "    z = i", "def f():", "    return 1", "", "# c"])
            for _ in range(rng.randint(1, 30))
        ]
        chunks = K.split("\n".join(lines) + "\n")
        if chunks is None:
            continue
        order = list(range(len(chunks.starts)))
        for index in [*order, *rng.sample(order, len(order))]:
            assert chunks.line(index) == chunks.text.count("\n", 0, chunks.starts[index]), (lines, index)


def test_cardholder_literal_test_only_where_it_is_exact() -> None:
    """The SQL pre-check's first test needs, for every pattern, a literal part that any match holds."""
    from governed_kernel.policy.model import DataRules
    from governed_kernel.policy.sql import SqlRules

    for tables, columns in [(("*",), ()), (("vault.*",), ()), (("[!]]x",), ()), (("c?rd",), ("x[0-9]",))]:
        assert SqlRules(DataRules(cardholder_tables=tables, cardholder_columns=columns))._literals is None
    rules = SqlRules(
        DataRules(cardholder_tables=("*card*", "pan_*", "pan"), cardholder_columns=("cvv", "*_pan"))
    )
    assert rules._literals == ("card", "cvv", "pan")  # ``_pan`` and ``pan_`` hold ``pan``: not needed
    tokens = rules._tools()[0].tokenize
    assert not rules._may_name_cardholder_data(tokens("SELECT a.b.c.d FROM x..y"))
    assert rules._may_name_cardholder_data(tokens('SELECT "PAN_X" FROM t'))


def test_plain_data_in_the_namespace_never_carries_an_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact types skipped by ``aliases_from_namespace`` can never be callable or name a module;
    subclasses (which can) still take the full path: same aliases with and without the shortcut."""
    import subprocess

    from governed_kernel.policy import classifier

    for kind in classifier._PLAIN_DATA:
        value = kind()
        assert not callable(value) and getattr(value, "__module__", None) is None, kind

    class CallableInt(int):
        __module__ = "subprocess"

        def __call__(self) -> None:
            return None

    CallableInt.__qualname__ = "run"
    namespace = {"n": 1, "s": "x", "sp": subprocess, "r": subprocess.run, "sneaky": CallableInt(3)}
    fast = dict(classifier.aliases_from_namespace(namespace))  # a live view: keep what it says now
    monkeypatch.setattr(classifier, "_PLAIN_DATA", frozenset())
    assert fast == classifier.aliases_from_namespace(namespace)
    assert fast["sp"] == "subprocess" and fast["r"] == "subprocess.run"
