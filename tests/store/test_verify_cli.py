"""``jupyter governance verify``: output and exit codes that scripts and auditors rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from store_helpers import AuditPaths, fill, set_head, sql  # type: ignore[import-not-found]

from governed_server.cli import main
from governed_server.service.audit import AuditLog
from governed_server.service.store import Store


def verify(db_url: str, checkpoint_dir: Path, *extra: str) -> list[str]:
    return ["verify", "--db-url", db_url, "--checkpoint-dir", str(checkpoint_dir), *extra]


def test_intact_log_exits_0_with_the_summary(
    audit: AuditLog, db_url: str, audit_paths: AuditPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(audit, 12)
    audit.checkpoint()
    assert main(verify(db_url, audit_paths["checkpoint_dir"])) == 0
    out = capsys.readouterr().out
    assert out.startswith("12/12 records valid, chain intact to checkpoint 12 signed at ")


def test_json_report(
    audit: AuditLog, db_url: str, audit_paths: AuditPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(audit, 3)
    audit.checkpoint()
    assert main(verify(db_url, audit_paths["checkpoint_dir"], "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["total"] == 3 and report["last_checkpoint"]["seq"] == 3


def test_tampering_exits_1_and_names_the_first_bad_record(
    audit: AuditLog,
    store: Store,
    db_url: str,
    audit_paths: AuditPaths,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fill(audit, 10)
    audit.checkpoint()
    sql(store, "DELETE FROM audit_records WHERE seq = 4")
    assert main(verify(db_url, audit_paths["checkpoint_dir"])) == 1
    assert "first bad record 4 (deleted" in capsys.readouterr().out


def test_truncation_exits_1(
    audit: AuditLog,
    store: Store,
    db_url: str,
    audit_paths: AuditPaths,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fill(audit, 10)
    audit.checkpoint()
    sql(store, "DELETE FROM audit_records WHERE seq > 7")
    sql(store, "DELETE FROM audit_checkpoints")
    set_head(store, 7)
    assert main(verify(db_url, audit_paths["checkpoint_dir"], "--json")) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problems"][0] == {
        "seq": 8,
        "kind": "truncated",
        "detail": "signed checkpoint 10 records 10 entries but the log ends at 7",
    }


def test_quiet_prints_nothing(
    audit: AuditLog, db_url: str, audit_paths: AuditPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(audit, 2)
    assert main(verify(db_url, audit_paths["checkpoint_dir"], "--quiet")) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_pinned_public_key_rejects_checkpoints_of_another_key(
    audit: AuditLog, db_url: str, audit_paths: AuditPaths, tmp_path: Path
) -> None:
    from governed_server.service.audit_checkpoints import load_or_create_key, public_pem

    fill(audit, 2)
    audit.checkpoint()
    other = tmp_path / "other.pub"
    other.write_bytes(public_pem(load_or_create_key(tmp_path / "other.pem").public_key()))
    # Only the pinned key is trusted when no checkpoint dir holds the real one.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(verify(db_url, empty, "--public-key", str(other), "--quiet")) == 1


def test_real_entry_point_with_progress_bar(audit: AuditLog, db_url: str, audit_paths: AuditPaths) -> None:
    fill(audit, 3)
    audit.checkpoint()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "governed_server.cli",
            *verify(db_url, audit_paths["checkpoint_dir"], "--progress"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3/3 records valid, chain intact to checkpoint 3 signed at ")
    assert "verify" in result.stderr and "3/3" in result.stderr  # tqdm's bar


def test_unreachable_database_exits_2_without_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--db-url", "postgresql://auditor:s3cret@127.0.0.1:1/governance"]) == 2
    err = capsys.readouterr().err
    assert "cannot open the store" in err and "s3cret" not in err


def test_missing_sqlite_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--db-url", f"sqlite:///{tmp_path / 'none.sqlite'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite").exists()
