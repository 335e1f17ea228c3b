"""``jupyter governance policy check|explain`` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from governed_kernel.resources import policies_dir
from governed_server.cli import main


def test_check_default_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", str(policies_dir() / "pci-dss.yaml")]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "sha256:" in out and "9 (0 allow, 8 approve, 1 deny)" in out


def test_check_invalid_policy_exits_1_with_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (policies_dir() / "pci-dss.yaml").read_text().replace("retention_days: 365", "retention_days: 30")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    line = text.splitlines().index("  retention_days: 30") + 1
    assert main(["policy", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:{line}:19: audit.retention_days: 30 is too small; allowed: at least 365" in err


def test_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", "--json", str(policies_dir() / "examples" / "strict.yaml")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] and data["required_approvers"] == 2 and data["approval_validity"] == "once"


def test_explain_json_from_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cell = tmp_path / "cell.py"
    cell.write_text("import pandas as pd\ndf = pd.read_sql('SELECT pan FROM cards', con)\n!ls\n")
    assert main(["policy", "explain", "--json", str(cell)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["decision"] == "approve" and data["policy_version"].startswith("sha256:")
    ids = {rule["id"] for rule in data["rules"]}
    assert ids == {"sql-cardholder-read", "shell-commands"}
    sql = next(rule for rule in data["rules"] if rule["id"] == "sql-cardholder-read")
    assert sql["span"]["line"] == 2 and sql["action"] == "approve" and sql["reason"]


def test_explain_with_policy_and_notebook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notebook = tmp_path / "n.ipynb"
    notebook.write_text(
        json.dumps(
            {
                "cells": [
                    {"cell_type": "markdown", "source": "# t"},
                    {"cell_type": "code", "source": ["x = 1\n", "x"]},
                    {"cell_type": "code", "source": "cur.execute('DELETE FROM cards')"},
                ],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    strict = str(policies_dir() / "examples" / "strict.yaml")
    assert main(["policy", "explain", "--policy", strict, "--json", str(notebook)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["decision"] == "deny" and [c["decision"] for c in data["cells"]] == ["allow", "deny"]
    assert data["rules"][0]["cell"] == 1


def test_explain_stdin_text_through_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "governed_server.cli", "policy", "explain", "-"],
        input="get_ipython().kernel.session = None\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "decision: deny" in result.stdout and "1:1 deny    control-tampering" in result.stdout


def test_explain_bad_policy_and_missing_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("schema_version: 1\nname: x\nmode: enforce\nroles: {}\n")
    cell = tmp_path / "c.py"
    cell.write_text("x = 1\n")
    assert main(["policy", "explain", "--policy", str(bad), str(cell)]) == 1
    assert f"{bad}:4:8: roles: missing required key 'analysts'" in capsys.readouterr().err
    assert main(["policy", "explain", str(tmp_path / "nope.py")]) == 2
