"""The demo notebook that `make lab` opens runs top to bottom on the governed kernel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from governed_kernel import KERNEL_NAME


def test_demo_notebook_runs_on_the_governed_kernel(repo_root: Path, governance_service: Any) -> None:
    notebook = nbformat.read(repo_root / "binder" / "demo.ipynb", as_version=4)
    assert notebook.metadata.kernelspec.name == KERNEL_NAME
    env = {**os.environ, **governance_service.kernel_env("alice")}
    NotebookClient(notebook, timeout=120, kernel_name=KERNEL_NAME).execute(env=env)
    outputs = [
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    ]
    assert any(text.startswith("kernel: governed_kernel") for text in outputs), outputs
    assert "3 transactions, total 368.49\n" in outputs
