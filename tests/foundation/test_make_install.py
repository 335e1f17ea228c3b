"""`make test` reinstalls the project only when something that goes into the install changed.

Asked of make itself, without running anything (``make -q`` answers whether a target is up to date,
``-W file`` pretends that file was just modified), on the virtualenv that runs these tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def make_venv(repo_root: Path) -> Path:
    venv = repo_root / ".venv"
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    if Path(sys.prefix).resolve() != venv.resolve() or not (venv / ".installed-test").is_file():
        pytest.skip("the tests do not run from the virtualenv that `make test` installs")
    return venv


def up_to_date(repo_root: Path, *touched: str) -> bool:
    argv = ["make", "-q", "install", *(arg for path in touched for arg in ("-W", path))]
    result = subprocess.run(argv, cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode == 0


def test_the_install_is_up_to_date_after_make_test(repo_root: Path, make_venv: Path) -> None:
    assert up_to_date(repo_root), "make test would reinstall although nothing changed"


def test_a_changed_test_does_not_reinstall(repo_root: Path, make_venv: Path) -> None:
    assert up_to_date(repo_root, "tests/conftest.py", "README.md", "docs/ui.md")


def test_a_changed_build_definition_reinstalls(repo_root: Path, make_venv: Path) -> None:
    assert not up_to_date(repo_root, "pyproject.toml")
    assert not up_to_date(repo_root, "hatch_build.py")


def test_a_changed_source_reinstalls_unless_editable(repo_root: Path, make_venv: Path) -> None:
    sources = ["kernel/governed_kernel/kernel.py", "policies/pci-dss.yaml", "labextension/src/panel.ts"]
    editable = (make_venv / ".editable").exists()
    for source in sources:
        # An editable install (make dev) runs the sources in place: nothing to reinstall.
        assert up_to_date(repo_root, source) is editable, source
