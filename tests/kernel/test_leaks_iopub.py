"""Leak suite, IOPub side: every output path of a real governed kernel, with public test PANs.

For each path: no full PAN reaches the client (engine detector + an independent Luhn check on
digit runs), and the last four digits *are* visible (masked, not dropped).
"""

from __future__ import annotations

import pytest
from kernel_helpers import (  # type: ignore[import-not-found]
    AMEX,
    DISCOVER,
    MASTERCARD,
    PANS,
    VISA,
    Kernel,
    assert_masked,
    assert_no_pan,
    grouped,
)

V, M, A, D = VISA, MASTERCARD, AMEX, DISCOVER
LONG = next(p for p in PANS if len(p) == 19)
HALF = len(V) // 2

STREAM_CASES: dict[str, tuple[str, str]] = {
    "print plain": (f"print('card {V} end')", V),
    "print spaces": (f"print('card {grouped(M, ' ')} end')", M),
    "print dashes": (f"print('card {grouped(D, '-')}')", D),
    "print amex": (f"print({A})", A),
    "split across print(end='')": (f"print('{V[:HALF]}', end=''); print('{V[HALF:]}')", V),
    "split with no newline at all": (f"print('x {M[:7]}', end=''); print('{M[7:]}', end='')", M),
    "split across flush": (
        f"import sys, time\nprint('{grouped(V, ' ')[:9]}', end='', flush=True)\nsys.stdout.flush()\n"
        f"time.sleep(0.3)\nprint('{grouped(V, ' ')[9:]}')",
        V,
    ),
    "sys.stdout.write pieces": (f"import sys\nfor ch in '{D}':\n    sys.stdout.write(ch)\nprint()", D),
    "stderr": (f"import sys\nprint('err {M}', file=sys.stderr)", M),
    "stderr split": (
        f"import sys\nsys.stderr.write('{A[:5]}'); sys.stderr.flush(); sys.stderr.write('{A[5:]}')",
        A,
    ),
    "fd write": (f"import os\nos.write(1, b'fd {V}\\n')", V),
    "fd write split": (
        f"import os, time\nos.write(1, b'{M[:6]}'); time.sleep(0.3)\nos.write(1, b'{M[6:]}\\n')",
        M,
    ),
    "fd stderr": (f"import os\nos.write(2, b'{grouped(D, ' ')}\\n')", D),
    # The runtime guard would stop a subprocess in an unapproved cell under an enforce-mode policy;
    # this kernel's policy is observe mode (kernel_helpers), so the output path itself is tested.
    "subprocess output": (f"import subprocess\nsubprocess.run(['echo', 'sub {V}'], check=True)", V),
    "subprocess stderr": (f"import subprocess\nsubprocess.run(['sh', '-c', 'echo {M} >&2'], check=True)", M),
    "warnings": (f"import warnings\nwarnings.warn('card {A}')", A),
    "logging": (f"import logging\nlogging.getLogger('leak').warning('card %s', '{D}')", D),
    "long line": (f"print('x' * 5000 + ' {V} ' + 'y' * 5000)", V),
}


@pytest.mark.parametrize("case", list(STREAM_CASES))
def test_stream_paths_are_masked(kernel: Kernel, case: str) -> None:
    code, pan = STREAM_CASES[case]
    cell = kernel.ok(code)
    assert_masked(cell.everything, pan, where=case, shown=cell.shown)


def test_stream_text_is_complete_and_ordered(kernel: Kernel) -> None:
    cell = kernel.ok(f"print('a', end=''); print('{V[:4]}', end=''); print('{V[4:]} b')\nprint('next')")
    assert cell.stream("stdout") == f"a{'*' * (len(V) - 4)}{V[-4:]} b\nnext\n"


def test_held_tail_leaves_before_idle_and_in_its_own_cell(kernel: Kernel) -> None:
    cell = kernel.ok(f"print('ends with digits {V}', end='')")
    assert cell.stream("stdout").endswith(V[-4:])
    assert kernel.ok("print('second')").stream() == "second\n"


DISPLAY_CASES: dict[str, tuple[str, str]] = {
    "execute_result int": (f"{V}", V),
    "execute_result str": (f"'card {M}'", M),
    "execute_result dict": (f"{{'card': '{A}', {D}: 1}}", A),
    "HTML": (f"from IPython.display import HTML\nHTML('<td data-x=\"{V}\">{grouped(V, '&nbsp;')}</td>')", V),
    "Markdown": (
        f"from IPython.display import Markdown, display\ndisplay(Markdown('**{grouped(M, ' ')}**'))",
        M,
    ),
    "Latex": (f"from IPython.display import Latex\nLatex(r'$\\text{{{A}}}$')", A),
    "JSON": (f"from IPython.display import JSON\nJSON({{'cards': [{D}, '{V}'], 'n': {{'k': '{M}'}}}})", D),
    "raw MIME bundle": (
        f"from IPython.display import display\n"
        f"display({{'text/plain': '{V}', 'application/vnd.custom+json': {{'pan': '{V}'}}, "
        f"'text/csv': 'a,{V}'}}, raw=True, metadata={{'note': '{V}'}})",
        V,
    ),
    "update_display_data": (
        f"from IPython.display import display, HTML\nh = display('waiting', display_id=True)\n"
        f"h.update(HTML('<b>{M}</b>'))",
        M,
    ),
    "exception message": (f"raise ValueError('bad card {V}')", V),
    "exception source line": (f"def f():\n    return int('{M}') / 0\nf()", M),
    "exception in chained cause": (
        f"try:\n    raise KeyError('{A}')\nexcept KeyError as e:\n    raise RuntimeError('wrapped') from e",
        A,
    ),
    "comm open and message": (
        "from comm import create_comm\n"
        f"c = create_comm(target_name='leak', data={{'card': '{D}', 'n': {D}}})\n"
        f"c.send({{'x': '{grouped(D, ' ')}'}}, metadata={{'m': '{D}'}}, buffers=[b'buf {D}'])",
        D,
    ),
}


@pytest.mark.parametrize("case", list(DISPLAY_CASES))
def test_display_and_error_paths_are_masked(kernel: Kernel, case: str) -> None:
    code, pan = DISPLAY_CASES[case]
    cell = kernel.run(code)
    assert cell.outputs, f"{case}: no output"
    buffers = [m.get("buffers", []) for m in cell.iopub]
    assert_masked([*cell.everything, *buffers], pan, where=case, shown=[*cell.shown, *buffers])


def test_execute_input_echo_is_masked(kernel: Kernel) -> None:
    cell = kernel.ok(f"x = '{V}'")
    echo = [m for m in cell.iopub if m["msg_type"] == "execute_input"]
    assert echo, "no execute_input"
    assert_masked([m["content"] for m in echo], V, where="execute_input")


FRAME_SETUP = f"""
import decimal, pandas as pd
pans = {PANS[:12]!r}
"""

FRAME_CASES: dict[str, str] = {
    "object": "pd.DataFrame({'pan': pans, 'note': ['card ' + p for p in pans]})",
    "string dtype": "pd.DataFrame({'c': pd.array(pans, dtype='string')})",
    "int64": "pd.DataFrame({'c': [int(p) for p in pans]})",
    "float integral": "pd.DataFrame({'c': [float(p) for p in pans if len(p) <= 16]})",
    "Decimal": "pd.DataFrame({'c': [decimal.Decimal(p) for p in pans]})",
    "Series": "pd.Series(pans, name='cards')",
    "Index": "pd.Index(pans)",
    "column labels": "pd.DataFrame([[1] * 3], columns=pans[:3])",
    "wide cell truncated": (  # pandas cuts a 19-digit PAN to 13 digits + '...': no longer a PAN
        f"pd.set_option('display.max_colwidth', 16)\ndf = pd.DataFrame({{'c': ['{LONG}'] + pans}})\ndf"
    ),
    "long frame": "pd.DataFrame({'c': pans * 500})",
    "Styler": "pd.DataFrame({'c': pans}).style.highlight_max()",
    "display()": "from IPython.display import display\ndisplay(pd.DataFrame({'c': pans}))",
}


@pytest.mark.parametrize("case", list(FRAME_CASES))
def test_dataframes_are_masked_before_formatting(kernel: Kernel, case: str) -> None:
    kernel.ok(FRAME_SETUP + "pd.reset_option('display.max_colwidth')")
    cell = kernel.ok(FRAME_SETUP + FRAME_CASES[case])
    assert cell.outputs, case
    pan = A if case == "wide cell truncated" else PANS[0]  # 15 digits: not cut at width 16
    assert_masked(cell.everything, pan, where=case, shown=cell.shown)
    if case == "wide cell truncated":  # masked before the cut: no long digit run survives it
        for data in (m["content"]["data"] for m in cell.outputs):
            for text in data.values():
                runs = "".join(c if c.isdigit() else " " for c in text).split()
                assert not [run for run in runs if len(run) >= 8], f"{case}: digits of a cut PAN shown"


def test_print_of_a_dataframe_is_masked_by_the_stream(kernel: Kernel) -> None:
    cell = kernel.ok(FRAME_SETUP + "print(pd.DataFrame({'c': pans}))")
    assert_masked(cell.everything, PANS[0], where="print(df)", shown=cell.shown)


def test_masking_failure_drops_the_output_with_a_visible_notice(kernel: Kernel) -> None:
    cell = kernel.ok(
        "from IPython.display import publish_display_data\n"
        f"publish_display_data({{'text/plain': '{V}', 'application/x-odd': object()}})"
    )
    text = cell.stream("stderr")
    assert "withheld because masking failed" in text, cell.iopub
    assert_no_pan(str(cell.everything), where="fail closed")


def test_ledger_records_masked_outputs_of_a_cell(kernel: Kernel) -> None:
    cell = kernel.ok(
        "from governed_kernel.masking_ledger import OutputLedger\n"
        "s = get_ipython().kernel.session\n"
        "print(type(s).__name__, isinstance(s.ledger, OutputLedger))"
    )
    assert cell.stream() == "MaskingSession True\n"


def test_raw_copy_of_fd_output_is_masked(kernel: Kernel) -> None:
    kernel.ok(f"import os, subprocess\nos.write(1, b'raw {V}\\n')\nsubprocess.run(['echo', 'raw {M}'])")
    raw = kernel.raw_output()
    assert_no_pan(raw, where="kernel's original stdout/stderr")
    assert V[-4:] in raw and M[-4:] in raw, "the fd echo should be masked, not dropped"
