"""A card number printed in pieces with pauses (longer than the kernel's hold-back), through
``print``, ``sys.stdout.write`` and ``os.write``: JupyterLab joins the pieces into one output, and
neither its final output area nor the saved notebook ever holds the whole number (the kernel
retracts with ``clear_output(wait=True)`` and sends the outputs again, masked)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from lab_helpers import run_cell, wait_for_notebook  # type: ignore[import-not-found]

pytestmark = pytest.mark.browser

UI_TIMEOUT_MS = 90_000
CARDS = {"print": "4111111111111111", "sys.stdout.write": "5555555555554444", "os.write": "378282246310005"}
WRITE = {
    "print": "print(piece, end='', flush=True)",
    "sys.stdout.write": "sys.stdout.write(piece); sys.stdout.flush()",
    "os.write": "os.write(1, piece.encode())",
}
COUNTS = {"print": 16, "sys.stdout.write": 5, "os.write": 2}


def cell(how: str) -> str:
    pan = CARDS[how]
    text = f"{how}: {pan[:4]} {pan[4:8]} {pan[8:12]} {pan[12:]} end"
    size = -(-len(text) // COUNTS[how])
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    return (f"import os, sys, time\nfor piece in {json.dumps(pieces)}:\n    {WRITE[how]}\n"
            "    time.sleep(0.6)\nprint()")  # fmt: skip


def notebook() -> str:
    empty: dict[str, Any] = {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": []}
    cells = [{**empty, "id": f"c{i}", "source": cell(how)} for i, how in enumerate(CARDS)]
    nb = {"nbformat": 4, "nbformat_minor": 5, "cells": cells,
          "metadata": {"kernelspec": {"name": "governed-python", "display_name": "Python 3 (governed)",
                                      "language": "python"}}}  # fmt: skip
    return json.dumps(nb, indent=1) + "\n"


def held(pan: str, text: str) -> bool:
    """The PAN is in ``text``, separators (spaces, dashes, dots) ignored."""
    return pan in re.sub(r"[ .\-]", "", text)


def test_a_pan_printed_in_pieces_never_stays_whole_in_lab_or_the_saved_notebook(
    start_lab: Any, page: Any, artifacts_dir: Path
) -> None:
    lab = start_lab({"LabApp": {"expose_app_in_browser": True}})
    path = lab.root_dir / "pieces.ipynb"
    path.write_text(notebook())
    page.goto(lab.lab_url("lab/tree/pieces.ipynb"), timeout=UI_TIMEOUT_MS)
    wait_for_notebook(page, "pieces.ipynb", UI_TIMEOUT_MS)
    for index, how in enumerate(CARDS):
        locator = run_cell(page, index)
        locator.locator(".jp-OutputArea-output", has_text=f"{how}:").first.wait_for(timeout=UI_TIMEOUT_MS)
        page.wait_for_function(
            """(index) => {
                const nb = window.jupyterapp.shell.currentWidget;
                const model = nb.content.widgets[index].model;
                return model.executionCount !== null && nb.sessionContext.kernelDisplayStatus === 'idle';
            }""",
            arg=index,
            timeout=UI_TIMEOUT_MS,
        )
    page.screenshot(path=str(artifacts_dir / "stream-pieces.png"))
    outputs = page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.content.widgets.map(w => w.model.toJSON().outputs)"
    )
    areas = page.locator(".jp-NotebookPanel:visible .jp-OutputArea")
    shown = json.dumps(outputs) + "\n".join(areas.all_inner_texts())
    for how, pan in CARDS.items():
        assert f"{how}:" in shown and f"{pan[-3:]} end" in shown, f"{how}: the output is shown, masked"
        assert not held(pan, shown), f"{how}: the whole card number is in Lab's output area"
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=UI_TIMEOUT_MS
    )
    saved = json.dumps([c["outputs"] for c in json.loads(path.read_text())["cells"]])
    for how, pan in CARDS.items():
        assert f"{pan[-3:]} end" in saved, f"{how}: the saved notebook has the masked output"
        assert not held(pan, saved), f"{how}: the whole card number is in the saved notebook"
