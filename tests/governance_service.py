"""A real governance service (``jupyter governance serve``) for tests that run governed kernels.

Kernels started by jupyter_client outside a Jupyter server get their service URL and credential
from the environment, as in CI: :meth:`GovernanceService.kernel_env` mints a credential for a user
and returns the variables to start the kernel with.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from governed_kernel.resources import policies_dir

USERS = ("alice", "bob", "carol", "dave")
TOKENS = {name: hashlib.sha256(f"governed-test-{name}".encode()).hexdigest() for name in USERS}


def write_test_policy(path: Path, **overrides: Any) -> Path:
    """The bundled PCI DSS policy with named test roles: alice analyst, bob/carol approvers, dave auditor."""
    data = yaml.safe_load((policies_dir() / "pci-dss.yaml").read_text())
    data["roles"] = {
        "analysts": {"users": ["alice"], "groups": []},
        "approvers": {"users": ["bob", "carol"], "groups": []},
        "auditors": {"users": ["dave"], "groups": []},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GovernanceService:
    root: Path
    policy_path: Path
    url: str = ""
    db_url: str = ""
    process: subprocess.Popen[bytes] | None = None
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return self.url + "governance/api/"

    def start(self) -> GovernanceService:
        config_dir = self.root / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "jupyter_server_config.json").write_text(
            json.dumps(
                {"NamedTokenIdentityProvider": {"users": {token: name for name, token in TOKENS.items()}}}
            )
        )
        self.db_url = f"sqlite:///{self.root / 'store' / 'governance.sqlite'}"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/"
        argv = [
            sys.executable, "-m", "governed_server.cli", "serve", f"--port={port}", "--allow-root", "--",
            f"--GovernedServerApp.policy_path={self.policy_path}",
            f"--GovernedServerApp.db_url={self.db_url}",
            f"--GovernedServerApp.checkpoint_dir={self.root / 'checkpoints'}",
            f"--GovernedServerApp.signing_key_path={self.root / 'keys' / 'audit.pem'}",
            "--ServerApp.identity_provider_class=governed_server.identity_provider.NamedTokenIdentityProvider",
        ]  # fmt: skip
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(config_dir),
            "JUPYTER_DATA_DIR": str(self.root / "data"),
        }
        log = (self.root / "serve.log").open("wb")
        self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.as_user("dave").get("health").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "governance service did not start:\n" + (self.root / "serve.log").read_text()
                )
            time.sleep(0.2)

    def stop(self) -> None:
        for client in self.clients.values():
            client.close()
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def as_user(self, name: str) -> httpx.Client:
        if name not in self.clients:
            self.clients[name] = httpx.Client(
                base_url=self.api_url, headers={"Authorization": f"token {TOKENS[name]}"}, timeout=30
            )
        return self.clients[name]

    def kernel_env(self, user: str = "alice", kernel_id: str | None = None, **extra: str) -> dict[str, str]:
        """Environment for a governed kernel acting for ``user`` (credential minted in the shared store)."""
        from governed_server.credentials import CredentialIssuer
        from governed_server.store import open_store

        store = open_store(self.db_url)
        try:
            kid = kernel_id or f"test-{user}-{time.monotonic_ns()}"
            token = CredentialIssuer(store).mint(kid, user)
        finally:
            store.close()
        return {
            "GOVERNED_SERVICE_URL": self.api_url,
            "GOVERNED_KERNEL_TOKEN": token,
            "GOVERNED_POLICY": str(self.policy_path),
            **extra,
        }

    def pending(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = (
            self.as_user("bob").get("approvals", params={"status": "pending"}).json()["requests"]
        )
        return requests

    def decide(self, request_id: str, decision: str, reason: str, approver: str = "bob") -> dict[str, Any]:
        response = self.as_user(approver).post(
            f"approvals/{request_id}/decision", json={"decision": decision, "reason": reason}
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def audit(self, **params: Any) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = (
            self.as_user("dave").get("audit", params={"limit": 1000, **params}).json()["records"]
        )
        return records
