"""The governance service's files are the owner's alone: 0600 in 0700 folders, created so and
tightened (and logged) when found wider at start."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from service_helpers import write_policy  # type: ignore[import-not-found]

from governed_server.service.governance import GovernanceService, ServiceSettings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode) & 0o777


def settings(root: Path, *, key: Path | None = None) -> ServiceSettings:
    return ServiceSettings(
        policy_path=write_policy(root / "policy.yaml"),
        db_url=f"sqlite:///{root / 'store' / 'governance.sqlite'}",
        checkpoint_dir=root / "store" / "checkpoints",
        signing_key_path=key or root / "store" / "audit-signing-key.pem",
        groups={},
    )


@pytest.fixture(autouse=True)
def usual_umask() -> object:
    old = os.umask(0o022)  # what a login shell has: files would be 0644 without care
    yield
    os.umask(old)


def test_files_are_created_private(tmp_path: Path) -> None:
    config = settings(tmp_path)
    service = GovernanceService(config)
    try:
        service.credentials.mint("kernel-file-modes", "alice")  # a write: the WAL and its index exist
        store = tmp_path / "store" / "governance.sqlite"
        present = [p for p in (store, Path(f"{store}-wal"), Path(f"{store}-shm")) if p.exists()]
        assert len(present) == 3, present
        assert {p.name: mode(p) for p in present} == {p.name: 0o600 for p in present}
        assert mode(store.parent) == 0o700
        assert mode(config.signing_key_path) == 0o600, "the key is made at start, private"
        assert mode(config.checkpoint_dir) == 0o700
        record = {"event_type": "cell.start", "code": "x = 1", "cell_hash": ""}
        from governed_server.identity import KernelPrincipal

        service.ingest_kernel_audit(KernelPrincipal("kernel-file-modes", "alice"), [record], "127.0.0.1")
        assert service.audit.checkpoint() is not None
        files = sorted(config.checkpoint_dir.iterdir())
        assert files and {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        service.close()


def test_wider_modes_are_tightened_at_start_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(tmp_path)
    GovernanceService(config).close()
    store = tmp_path / "store" / "governance.sqlite"
    loose = [store, config.signing_key_path]
    for path in loose:
        path.chmod(0o644)
    (config.checkpoint_dir / "checkpoints.jsonl").write_text("")
    (config.checkpoint_dir / "checkpoints.jsonl").chmod(0o664)
    for folder in (store.parent, config.checkpoint_dir):
        folder.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="governed_server"):
        service = GovernanceService(config)
    service.close()
    assert mode(store) == mode(config.signing_key_path) == 0o600
    assert mode(config.checkpoint_dir / "checkpoints.jsonl") == 0o600
    assert mode(store.parent) == mode(config.checkpoint_dir) == 0o700
    changed = "\n".join(service.file_changes)
    for path in (*loose, store.parent, config.checkpoint_dir, config.checkpoint_dir / "checkpoints.jsonl"):
        assert str(path) in changed and str(path) in caplog.text, path
    assert "0644 -> 0600" in caplog.text and "0755 -> 0700" in caplog.text


def test_a_shared_folder_is_left_alone_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    with caplog.at_level(logging.WARNING, logger="governed_server"):
        service = GovernanceService(settings(tmp_path, key=shared / "audit.pem"))
    service.close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert mode(shared / "audit.pem") == 0o600
    assert f"{shared} holds audit signing key folder" in caplog.text


def test_the_demo_tokens_file_is_tightened_when_read(tmp_path: Path) -> None:
    from governed_server.demo import TOKENS_FILE, load_tokens

    demo_dir = tmp_path / "demo"
    tokens = load_tokens(demo_dir)
    assert mode(demo_dir) == 0o700 and mode(demo_dir / TOKENS_FILE) == 0o600
    (demo_dir / TOKENS_FILE).chmod(0o644)
    demo_dir.chmod(0o755)
    assert load_tokens(demo_dir) == tokens
    assert mode(demo_dir) == 0o700 and mode(demo_dir / TOKENS_FILE) == 0o600
