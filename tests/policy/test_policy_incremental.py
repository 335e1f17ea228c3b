"""The fast paths (word pre-filter, statement-by-statement scan, caches) must decide as the whole-cell scan.

Every risky construct is placed inside long cells of ordinary analysis code, so the statement that
matters is far from what it depends on (an import, an alias, the SQL text in a variable).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from governed_kernel.policy import Classifier, Decision, load_policy
from governed_kernel.policy.chunks import split
from governed_kernel.resources import policies_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_classify import SAFE_LINES, make_cell  # type: ignore[import-not-found]
from test_policy_classifier import TABLE  # type: ignore[import-not-found]

POLICY = load_policy(policies_dir() / "pci-dss.yaml")
CLASSIFIER = Classifier(POLICY)


def _key(decision: Decision) -> tuple[object, ...]:
    return (
        decision.action,
        decision.notes,
        tuple((f.rule_id, f.criterion, f.subject, f.reason, f.span) for f in decision.findings),
    )


def _filler(rng: random.Random, count: int) -> str:
    return "\n".join(rng.choice(SAFE_LINES).format(i=rng.randrange(10_000)) for _ in range(count))


def _embed(code: str, seed: int, before: int = 12, after: int = 12) -> str:
    rng = random.Random(seed)
    return f"{_filler(rng, before)}\n{code}\n{_filler(rng, after)}\n"


def test_generated_cells_decide_as_the_whole_cell_scan() -> None:
    rng = random.Random(7)
    for index in range(300):
        cell = make_cell(rng, index)
        assert _key(CLASSIFIER.classify_uncached(cell)) == _key(CLASSIFIER.classify_whole(cell)), cell


@pytest.mark.parametrize(("cell", "expected", "rule"), TABLE, ids=[repr(c)[:50] for c, _, _ in TABLE])
def test_table_cells_inside_long_cells(cell: str, expected: str, rule: str | None) -> None:
    long_cell = _embed(cell, seed=len(cell))
    incremental = CLASSIFIER.classify_uncached(long_cell)
    whole = CLASSIFIER.classify_whole(long_cell)
    if whole.notes and "SyntaxError" in whole.notes[0]:
        # Statements that are not read are not checked for syntax: an invalid cell (which runs nothing)
        # may be judged on what it holds instead of "allow: nothing runs" — never less strictly.
        order = ("allow", "approve", "deny")
        assert order.index(incremental.action) >= order.index(whole.action)
        return
    assert _key(incremental) == _key(whole)
    if not cell.startswith("%%") and "def broken" not in cell and not cell.startswith("\n"):
        assert incremental.action == expected, incremental.summary()
        if rule is not None:
            assert rule in incremental.rule_ids


# Each construct must be caught although the words that give it away are spread over statements,
# hidden in escapes or concatenations, or spelled with other Unicode forms.
EVASIONS = [
    ("x = os", "x.system('id')"),
    ("(x  # comment\n) = os", "x.system('id')"),
    ("x: dict[\n    str, int] = os", "x.system('id')"),
    ("print((x := os))", "x.system('id')"),
    ("import subprocess as sp", "sp.run(['ls'])"),
    ("é = subprocess", "é.run(['ls'])"),
    ("import os", "\uff4f\uff53.system('id')"),  # fullwidth "os"
    ("import json as j", "getattr(j, name)('x')"),
    ("e = exec", "e(code)"),
    ("q = 'SELECT pan FROM cards'", "cur.execute(q)"),
    ("import posix", "posix.system('id')"),
    ("import sys", "sys.modules['\\x6fs'].system('id')"),
    ("import sys", "sys.modules['o' 's'].system('id')"),
    ("x = 1", "df.to_parquet('s3:' '//bucket/x.parquet')"),
    ("x = 1", "df.to_parquet('s3:\\x2f/bucket/x.parquet')"),
    ("x = 1", "globals()['sub' 'process'].run(['ls'])"),
    ("from subprocess import *", "run(['ls'])"),
    ("@decorator\ndef f():\n    pass", "os.system('id')"),
    ("y = [\nos.system,\n]", "y[0]('id')"),
    ("z = 1 \\\n    + 2", "import ctypes"),
    # Found while making the text passes faster; the earlier binding patterns missed these targets.
    ("s = 'a#'; x = os", "x.system('id')"),  # a left-to-right gap ran from the '#' in the string to '='
    ("print((x\n:= os))", "x.system('id')"),  # ':=' opened a new piece: the target was left in the one before
    ("print((x\n\\\n:= os))", "x.system('id')"),
    ("(x  # c = 1\n) = os", "x.system('id')"),
    ("s = '(x #'; x = os", "x.system('id')"),  # a skipped keyword-argument look-alike must not hide 'x ='
    ("f(a, x=1)\nx = os", "x.system('id')"),
]


@pytest.mark.parametrize(("binding", "use"), EVASIONS, ids=[f"{b!r}|{u!r}"[:60] for b, u in EVASIONS])
def test_spread_and_hidden_constructs_are_caught(binding: str, use: str) -> None:
    rng = random.Random(len(binding) + len(use))
    cell = f"{_filler(rng, 5)}\n{binding}\n{_filler(rng, 20)}\n{use}\n{_filler(rng, 5)}\n"
    incremental = CLASSIFIER.classify_uncached(cell)
    assert incremental.action != "allow", (cell, incremental.summary())
    assert _key(incremental) == _key(CLASSIFIER.classify_whole(cell))


def test_code_inside_a_string_is_not_a_statement() -> None:
    cell = _embed('HELP = """\nimport subprocess\nsubprocess.run(["ls"])\n"""\nprint(HELP)', seed=3)
    assert CLASSIFIER.classify_uncached(cell).action == "allow"
    assert _key(CLASSIFIER.classify_uncached(cell)) == _key(CLASSIFIER.classify_whole(cell))


def test_aliases_from_earlier_cells_reach_any_statement() -> None:
    cell = _embed("sp.run(['ls'])", seed=5)
    assert CLASSIFIER.classify(cell, {"sp": "subprocess"}).action == "approve"
    assert CLASSIFIER.classify(cell, {"pd": "pandas"}).action == "allow"
    hidden = _embed("globals()['s' 'p'].run(['ls'])", seed=5)
    assert CLASSIFIER.classify(hidden, {"sp": "subprocess", "x": "y"}).action == "approve"


def test_cells_read_as_a_whole() -> None:
    assert split("%%bash\nls\n") is None
    assert split("x = 1\n%%bash\nls\n") is None
    assert split("  x = 1\n  y = 2\n") is None
    assert split(">>> import os\n>>> os.system('id')\n") is None
    assert split("x = 1\r\ny = 2\r\n") is None
    chunks = split("# note\n\nimport os\nif x:\n    y = 1\nelse:\n    y = 2\n@d\ndef f():\n    pass\n")
    assert chunks is not None
    assert [source.split("\n")[0] for source in chunks.sources] == ["# note", "if x:", "@d"]


def test_cache_key_ignores_unused_aliases_and_cold_start_clears_everything() -> None:
    classifier = Classifier(POLICY)
    cell = _embed("cur.execute('SELECT pan FROM cards')", seed=9)
    first = classifier.classify(cell, {"unused": "subprocess"})
    assert classifier.classify(cell, {"other": "os"}) is first
    classifier.cache_clear()
    assert classifier.sql.analyze.cache_info().currsize == 0
    assert classifier.classify(cell) is not first
