"""Turn a notebook cell into the Python that IPython will actually run, as an AST.

``!ls``, ``x = !ls``, ``%%bash`` and ``%sql`` are not Python; IPython rewrites them into calls such as
``get_ipython().system('ls')`` before compiling. Classifying that rewritten code lets one set of rules
see shell escapes and magics as ordinary calls. IPython's transformer tokenizes in pure Python and is
slow on long cells, so it only runs when the cell is not valid Python already (a valid Python cell is
left unchanged by IPython's transforms).
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from keyword import kwlist
from typing import Any

_NEEDS_IPYTHON = re.compile(
    r"^[ \t]*[%!?/,;]|=[ \t]*[!%]|\?[ \t]*$|^[ \t]*(>>>|\.\.\.)|^In \[\d+\]:|\A\s*\n*[ \t]+\S", re.MULTILINE
)
"""IPython syntax: magics, escapes, help, pasted prompts, or an indented first line (IPython dedents)."""
_KEYWORDS = frozenset(kwlist)


_SHELL_LINE = re.compile(
    r"((?:[A-Za-z_][A-Za-z0-9_]*[ \t]*=[ \t]*)?)!"
    r"([A-Za-z0-9_./*'\", :@+%<>|&{}$()\[\]-][A-Za-z0-9_./*'\" \t=:@+%<>|&{}$()\[\]#-]*)\n?"
)
"""A one-line ``!cmd`` or ``name = !cmd`` in plain ASCII, without what makes IPython read it otherwise
(``!!``, ``!=``, ``?``, ``\\``, ``;``, a leading indent, more lines): :func:`_shell_line` writes the
call IPython writes, without tokenizing the cell."""


def _shell_line(cell: str) -> str | None:
    """What IPython's transformer makes of a simple one-line shell escape, or None for anything else
    (then IPython's transformer runs). Checked against the transformer on many generated lines in
    ``tests/policy/test_policy_shortcuts.py``."""
    found = _SHELL_LINE.fullmatch(cell)
    if found is None:
        return None
    target, command = found.groups()
    if target and target.partition("=")[0].strip() in _KEYWORDS:
        return None
    call = "getoutput" if target else "system"
    command = command.rstrip(" \t")
    return f"{target}get_ipython().{call}({command!r})\n"


@dataclass(frozen=True)
class PreparedSource:
    """``tree`` is None when nothing will run; ``note`` then says why. ``line_offset`` maps lines back."""

    tree: ast.Module | None
    line_offset: int = 0
    note: str | None = None


@functools.lru_cache(maxsize=1)
def _transformer() -> Any:
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()  # type: ignore[no-untyped-call]


def _leading_blank_lines(text: str) -> int:
    count = 0
    for line in text.splitlines():
        if line.strip():
            break
        count += 1
    return count


def prepare(cell: str) -> PreparedSource:
    """Parse ``cell`` as IPython would run it.

    A cell that does not parse after IPython's transforms is reported with ``tree=None``: IPython
    compiles the whole cell before running any of it, so a SyntaxError means no statement runs.
    """
    try:
        return PreparedSource(ast.parse(cell))
    except (SyntaxError, ValueError) as error:
        if not _NEEDS_IPYTHON.search(cell):
            # No magic, escape, help, prompt or leading indent: IPython would leave the cell unchanged.
            where = f" at line {error.lineno}" if isinstance(error, SyntaxError) and error.lineno else ""
            return PreparedSource(
                None,
                note=f"the cell is not valid Python{where}: IPython will raise SyntaxError and run nothing",
            )
    try:
        transformed: str = _shell_line(cell) or _transformer().transform_cell(cell)
    except Exception as error:  # IPython refuses the cell: it shows the error and runs nothing.
        return PreparedSource(
            None, note=f"IPython cannot transform this cell ({type(error).__name__}); nothing in it will run"
        )
    try:
        tree = ast.parse(transformed)
    except (SyntaxError, ValueError) as error:
        where = f" at line {error.lineno}" if isinstance(error, SyntaxError) and error.lineno else ""
        return PreparedSource(
            None, note=f"the cell is not valid Python{where}: IPython will raise SyntaxError and run nothing"
        )
    offset = _leading_blank_lines(cell) - _leading_blank_lines(transformed)
    return PreparedSource(tree, line_offset=max(offset, 0))
