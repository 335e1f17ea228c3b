"""`jupyter governance serve` as its own process, driven by `jupyter governance approvals` and a kernel."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_helpers import TOKENS, cell_request, write_policy  # type: ignore[import-not-found]

from governed_server.service.credentials import CredentialIssuer
from governed_server.service.store import open_store
from governed_server.single_user.serve_process import ServeProcess

CLI = [sys.executable, "-m", "governed_server.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def service(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`jupyter governance serve` (through ServeProcess, which runs exactly that command)."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    users = {token: name for name, token in TOKENS.items()}
    config = {"NamedTokenIdentityProvider": {"users": users}}
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(config))
    db_url = f"sqlite:///{tmp_path / 'store' / 'governance.sqlite'}"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    server_args = [
        "--GovernedServerApp.groups={'approvers': ['carol']}",
        "--ServerApp.identity_provider_class=governed_server.identity_provider.NamedTokenIdentityProvider",
    ]
    with ServeProcess(
        policy_path=write_policy(tmp_path / "policy.yaml"), db_url=db_url, log_path=tmp_path / "serve.log",
        server_args=server_args, env=env,
    ) as server:  # fmt: skip
        health = httpx.get(server.api_url + "health", headers={"Authorization": f"token {TOKENS['bob']}"})
        assert health.status_code == 200, server.log_tail()
        yield {"url": server.url, "db_url": db_url, "health": health.json(), "env": env}


def cli(service: dict[str, Any], user: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "approvals", "--url", service["url"], "--token", TOKENS[user], *args],
        capture_output=True, text=True, timeout=60, env=service["env"],
    )  # fmt: skip


def test_serve_and_work_the_queue_from_the_terminal(service: dict[str, Any]) -> None:
    assert service["health"]["status"] == "ok"
    # A kernel of alice's, with a credential minted in the shared store by another process.
    store = open_store(service["db_url"])
    try:
        token = CredentialIssuer(store).mint("k-cli", "alice")
    finally:
        store.close()
    kernel = httpx.Client(
        base_url=service["url"] + "governance/api/", headers={"Authorization": f"GovernedKernel {token}"}
    )
    created = kernel.post(
        "kernel/approvals", json=cell_request(policy_version=service["health"]["policy_version"])
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]

    listing = cli(service, "bob", "list")
    assert listing.returncode == 0, listing.stderr
    assert request_id in listing.stdout and "alice" in listing.stdout and "shell-escape" in listing.stdout

    refused = cli(service, "alice", "approve", request_id, "--reason", "mine")
    assert refused.returncode == 1
    assert "not an approver" in refused.stderr
    assert "Traceback" not in refused.stderr

    no_reason = cli(service, "bob", "approve", request_id)
    assert no_reason.returncode == 2
    assert "--reason" in no_reason.stderr

    approved = cli(service, "bob", "approve", request_id, "--reason", "listing only")
    assert approved.returncode == 0, approved.stderr
    assert f"{request_id}: approved (1/1 approvals)" in approved.stdout

    waited = kernel.get(f"kernel/approvals/{request_id}/wait", params={"timeout": 5})
    assert waited.json()["status"] == "approved"
    again = cli(service, "carol", "deny", request_id, "--reason", "too late")
    assert again.returncode == 1
    assert "409" in again.stderr


def test_cli_errors_are_clear_without_a_server(tmp_path: Path) -> None:
    unreachable = subprocess.run(
        [*CLI, "approvals", "--url", f"http://127.0.0.1:{free_port()}/", "--token", "x", "list"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert unreachable.returncode == 2
    assert "cannot reach" in unreachable.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("GOVERNED_API_URL", "JUPYTER_SERVER_URL")}
    missing = subprocess.run([*CLI, "approvals", "list"], capture_output=True, text=True, timeout=60, env=env)
    assert missing.returncode == 2
    assert "no server URL" in missing.stderr
