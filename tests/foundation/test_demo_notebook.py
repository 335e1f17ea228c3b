"""The demo notebook that `make lab` opens runs top to bottom on the governed kernel.

Run in batch, nobody approves: the approval cell (tagged ``raises-exception``) fails at once with
``ApprovalRequired`` (``GOVERNED_APPROVAL_TIMEOUT=0``), and the rest of the notebook still runs.
The file itself holds no card number (the cells build them when they run): the server masks every
file that holds one, so a demo that stored them would open masked and read-only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from governed_kernel import KERNEL_NAME

TEST_PANS = ("4242424242424242", "5555555555554444", "378282246310005")


def test_demo_notebook_runs_on_the_governed_kernel(repo_root: Path, governance_service: Any) -> None:
    notebook = nbformat.read(repo_root / "binder" / "demo.ipynb", as_version=4)
    assert notebook.metadata.kernelspec.name == KERNEL_NAME
    env = {**os.environ, **governance_service.kernel_env("alice"), "GOVERNED_APPROVAL_TIMEOUT": "0"}
    NotebookClient(notebook, timeout=120, kernel_name=KERNEL_NAME).execute(env=env)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    outputs = [output.get("text", "") for cell in code_cells for output in cell.outputs]
    assert any(text.startswith("kernel: governed_kernel") for text in outputs), outputs
    assert "3 transactions, total 368.49\n" in outputs

    # Masking: the DataFrame and the printed text show the last four digits only.
    every_output = json.dumps([cell.outputs for cell in code_cells])
    for pan in TEST_PANS:
        assert pan not in every_output
    frame = next(cell for cell in code_cells if cell.id == "masked-frame")
    html = frame.outputs[0]["data"]["text/html"]
    assert "4242" in html and "4444" in html and "<table" in html

    # The approval cell is clearly marked and fails fast in batch with what to do.
    approval = next(cell for cell in code_cells if cell.id == "approval-cell")
    assert "needs-approval" in approval.metadata.tags and "raises-exception" in approval.metadata.tags
    errors = [output for output in approval.outputs if output.output_type == "error"]
    assert errors and errors[0]["ename"] == "ApprovalRequired", approval.outputs
    assert "jupyter governance approvals approve" in errors[0]["evalue"]

    # The cells after it ran (their runs are in the audit trail).
    last = next(cell for cell in code_cells if cell.id == "audit-output")
    assert last.outputs and "1002" in last.outputs[0]["text"]


def test_the_demo_notebook_stores_no_card_number(repo_root: Path) -> None:
    path = repo_root / "binder" / "demo.ipynb"
    scan = subprocess.run(
        [sys.executable, "-m", "governed_server.cli", "scan", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert scan.returncode == 0, scan.stdout + scan.stderr
    assert "0 unmasked card number(s) found" in scan.stderr
    text = path.read_text()
    assert all(pan not in text for pan in TEST_PANS)
    # What it builds at run time are the same public test numbers the checks below look for.
    cells = json.loads(text)["cells"]
    source = "".join(next(cell for cell in cells if cell["id"] == "transactions")["source"])
    assert 'card("4242", "4242", "4242", "4242")' in source and 'card("3782", "822463", "10005")' in source


def test_an_older_scratch_copy_with_card_numbers_is_put_aside(
    tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from governed_server.demo import DEMO_NOTEBOOK_NAME, NOTEBOOKS_DIR, prepare_notebooks

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))  # the notary's signatures go there

    folder = tmp_path / NOTEBOOKS_DIR
    folder.mkdir(parents=True)
    older = (
        (repo_root / "binder" / "demo.ipynb")
        .read_text()
        .replace('card(\\"4242\\", \\"4242\\", \\"4242\\", \\"4242\\")', '\\"4242424242424242\\"')
    )
    assert "4242424242424242" in older
    (folder / DEMO_NOTEBOOK_NAME).write_text(older)
    prepare_notebooks(tmp_path)
    assert (folder / DEMO_NOTEBOOK_NAME).read_bytes() == (repo_root / "binder" / "demo.ipynb").read_bytes()
    assert (folder / f"{DEMO_NOTEBOOK_NAME}.card-numbers.bak").read_text() == older
    prepare_notebooks(tmp_path)  # a current copy is kept (edits survive restarts)
    assert (folder / DEMO_NOTEBOOK_NAME).read_bytes() == (repo_root / "binder" / "demo.ipynb").read_bytes()
