"""ruff and mypy stay clean: CI fails on a lint, format or type error like on a failing test.

The linters are pinned in the ``test`` extra so that ``make lint`` gives the same answer on every
machine; the environment running the tests must hold exactly those versions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

LINTERS = ("ruff", "mypy")


def run_tool(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which(args[0], path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.fail(f"{args[0]} is not installed in {Path(sys.executable).parent}: install the 'test' extra")
    return subprocess.run([executable, *args[1:]], cwd=repo_root, capture_output=True, text=True, timeout=600)


def pinned_versions(repo_root: Path) -> dict[str, str]:
    """Name → version of every ``"name==version"`` requirement in pyproject.toml (tomllib is 3.11+)."""
    text = (repo_root / "pyproject.toml").read_text()
    return {m[1].lower(): m[2] for m in re.finditer(r'^\s*"([A-Za-z0-9_.-]+)==([^";\s]+)"', text, re.M)}


def test_linters_are_pinned_and_installed_at_their_pins(repo_root: Path) -> None:
    pins = pinned_versions(repo_root)
    for name in LINTERS:
        assert name in pins, f"{name} must be pinned (name==version) in the test extra"
        assert version(name) == pins[name], f"{name} {version(name)} is installed, the pin is {pins[name]}"


def test_ruff_is_clean(repo_root: Path) -> None:
    result = run_tool(repo_root, "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean(repo_root: Path) -> None:
    result = run_tool(repo_root, "ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean(repo_root: Path) -> None:
    result = run_tool(repo_root, "mypy")
    assert result.returncode == 0, result.stdout + result.stderr
