"""ruff and mypy stay clean: CI fails on a lint or type error like on a failing test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def run_tool(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which(args[0], path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.fail(f"{args[0]} is not installed in {Path(sys.executable).parent}: install the 'test' extra")
    return subprocess.run([executable, *args[1:]], cwd=repo_root, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean(repo_root: Path) -> None:
    result = run_tool(repo_root, "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean(repo_root: Path) -> None:
    result = run_tool(repo_root, "mypy")
    assert result.returncode == 0, result.stdout + result.stderr
