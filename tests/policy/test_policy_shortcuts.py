"""The cheaper forms of the binding-site and word-location passes give what the plain forms give."""

from __future__ import annotations

import random
import re

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


_ALPHABET = ["a", "b", "x1", " ", "\t", "\n", "=", ":", "(", ")", ",", "\\", "#", "==", ":=", "'", "f", "1",
             "\u0661", "\u00b2", "é", "_"]


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
        lines = [" ".join(rng.choice(words) + rng.choice(["", "=", ".", "(", " df"]) for _ in range(3))
                 for _ in range(rng.randint(1, 8))]
        cell = "\n".join(("    " + line if i and rng.random() < 0.3 else line)
                         for i, line in enumerate(lines))
        chunks = K.split(cell + "\n")
        if chunks is None:
            continue
        found = K.Words(chunks)
        for name in ("df", "x", "os"):
            expected = {chunks.index_of(m.start())
                        for m in re.finditer(rf"(?<![^\W\d]){re.escape(name)}(?!\w)", chunks.text)
                        if not re.match(r"\w", chunks.text[m.start() - 1: m.start()]) or
                        chunks.text[m.start() - 1].isdigit()}
            assert found.where([name]) == expected, (cell, name)


def test_cardholder_prefilter_on_dotted_and_plain_names() -> None:
    from governed_kernel.policy import load_policy
    from governed_kernel.policy.sql import SqlRules
    from governed_kernel.resources import default_policy_path

    rules = SqlRules(load_policy(str(default_policy_path())).data)
    tokens = rules._tools()[0].tokenize
    for sql, may in [("SELECT id FROM orders", False), ("SELECT pan FROM orders", True),
                     ("SELECT o.pan FROM s.orders o", True), ("SELECT id FROM s.card_vault", True),
                     ('SELECT "a.pan" FROM t', True), ("SELECT id FROM a.b.c.d", True),
                     ("SELECT x FROM card_vault", True), ("SELECT a.id FROM s.t a", False)]:
        assert rules._may_name_cardholder_data(tokens(sql)) is may, sql


def test_one_line_shell_escape_is_written_as_ipython_writes_it() -> None:
    from IPython.core.inputtransformer2 import TransformerManager

    from governed_kernel.policy.source import _shell_line

    manager = TransformerManager()
    alphabet = [*"abcz019_./*'\" \t=:@+%<>|&{}$()[]#-", "ls", " -la", "data/", "'*.csv'", "\\", "?", "!", ";",
                "é", "!!", "!="]
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
        "files = get_ipython().getoutput(\"find . -name '*.csv'\")\n")
    for other in ("!!ls", "!ls?", "  !ls", "!ls\n!pwd", "x = !!ls", "!ls \\\n -la", "if = !ls", "!=1"):
        assert _shell_line(other) is None, other
