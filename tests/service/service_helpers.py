"""Shared by the service tests: named users and their tokens, a test policy, request bodies."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from governed_kernel.resources import policies_dir

USERS = {
    "alice": "analyst",  # runs cells
    "bob": "approver",
    "carol": "approver",
    "erin": "analyst and approver",
    "dave": "auditor",
    "mallory": "no role",
}
TOKENS = {name: hashlib.sha256(f"token-of-{name}".encode()).hexdigest() for name in USERS}


def write_policy(path: Path, sessions: dict[str, Any] | None = None, **approvals: Any) -> Path:
    """The bundled PCI DSS policy with test roles (and approval and session settings overridden)."""
    data = yaml.safe_load((policies_dir() / "pci-dss.yaml").read_text())
    if sessions is not None:
        data["sessions"] = sessions
    data["roles"] = {
        "analysts": {"users": ["alice", "erin"], "groups": []},
        "approvers": {"users": ["bob", "erin"], "groups": ["approvers"]},
        "auditors": {"users": ["dave"], "groups": []},
    }
    data["approvals"].update(approvals)
    if data["approvals"].get("validity") == "once":
        data["approvals"].pop("window_minutes", None)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


Api = Callable[..., Awaitable[tuple[int, Any]]]


def cell_request(code: str = "!ls /data", **extra: Any) -> dict[str, Any]:
    """The body a kernel sends for a cell that needs approval."""
    body = {
        "cell_hash": hashlib.sha256(code.encode()).hexdigest(),
        "code": code,
        "policy_version": extra.pop("policy_version", None),
        "rules": [{"id": "shell-escape", "action": "approve", "reason": "runs a shell command"}],
        "notebook_path": "analysis/cards.ipynb",
        "cell_id": "cell-1",
    }
    body.update(extra)
    return body
