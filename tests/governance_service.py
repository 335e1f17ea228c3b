"""A real governance service (``jupyter governance serve``) for tests that run governed kernels.

Kernels started by jupyter_client outside a Jupyter server get their service URL and credential
from the environment, as in CI: :meth:`GovernanceService.kernel_env` mints a credential for a user
and returns the variables to start the kernel with.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from governed_kernel.resources import policies_dir
from governed_server.single_user.serve_process import ServeProcess

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


def letters_only_id() -> str:
    """A unique id with no digits. Ids end up in audit records, which the service masks: a number in
    them (``time.monotonic_ns()`` is 14 digits after ten hours of uptime, a Diners Club length) can
    pass for a card number and be masked, which broke a test that checks nothing needed masking."""
    return uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))


@dataclass
class GovernanceService:
    root: Path
    policy_path: Path
    url: str = ""
    db_url: str = ""
    server: ServeProcess | None = None
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return self.url + "governance/api/"

    def start(self) -> GovernanceService:
        config_dir = self.root / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        users = {token: name for name, token in TOKENS.items()}
        (config_dir / "jupyter_server_config.json").write_text(
            json.dumps({"NamedTokenIdentityProvider": {"users": users}})
        )
        self.db_url = f"sqlite:///{self.root / 'store' / 'governance.sqlite'}"
        self.server = ServeProcess(
            policy_path=self.policy_path,
            db_url=self.db_url,
            log_path=self.root / "serve.log",
            server_args=[
                f"--GovernedServerApp.checkpoint_dir={self.root / 'checkpoints'}",
                f"--GovernedServerApp.signing_key_path={self.root / 'keys' / 'audit.pem'}",
                "--ServerApp.identity_provider_class=governed_server.identity_provider.NamedTokenIdentityProvider",
            ],
            env={**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir), "JUPYTER_DATA_DIR": str(self.root)},
        ).start()
        self.url = self.server.url
        return self

    def stop(self) -> None:
        for client in self.clients.values():
            client.close()
        if self.server is not None:
            self.server.stop()

    def as_user(self, name: str) -> httpx.Client:
        if name not in self.clients:
            self.clients[name] = httpx.Client(
                base_url=self.api_url, headers={"Authorization": f"token {TOKENS[name]}"}, timeout=30
            )
        return self.clients[name]

    def kernel_env(self, user: str = "alice", kernel_id: str | None = None, **extra: str) -> dict[str, str]:
        """Environment for a governed kernel acting for ``user`` (credential minted in the shared store)."""
        from governed_server.service.credentials import CredentialIssuer
        from governed_server.service.store import open_store

        store = open_store(self.db_url)
        try:
            kid = kernel_id or f"test-{user}-{letters_only_id()}"
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
        params: dict[str, str | int] = {"status": "pending", "limit": 1000}  # the default page is 200
        response = self.as_user("bob").get("approvals", params=params)
        requests: list[dict[str, Any]] = response.json()["requests"]
        return requests

    def request(self, request_id: str) -> dict[str, Any]:
        """One approval request as an approver sees it (the pending list is capped at 200, oldest
        first: a session-long service accumulates requests that tests left pending)."""
        response = self.as_user("bob").get(f"approvals/{request_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

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
