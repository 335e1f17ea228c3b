"""A team deployment on JupyterHub in a few lines of ``jupyterhub_config.py``.

::

    from governed_server.hub import configure
    configure(c, db_url="postgresql://governance@db/governance", policy="/etc/governance/policy.yaml")

What it sets up (docs/deploy-jupyterhub.md):

- the **governance service** (``jupyter governance serve --hub``), started by the Hub as its own OS
  user (``service_user``; the Hub must run as root), at ``/services/governance/``; it alone holds the
  store URL (in its environment, never on a command line), the signing key and the checkpoints,
  in ``state_dir`` (0700, the service user's);
- **roles**: custom scopes ``custom:governance:approve`` and ``custom:governance:audit``, granted
  to the users and groups the policy names as approvers and auditors (so Hub scopes and policy roles
  agree by construction; the service needs both, see ``identity.RoleResolver.has_role``); every
  user may reach the service (``access:services!service=governance``) to see their own requests
  and register their own kernels;
- **single-user servers in client mode** (``GOVERNED_HUB_SERVICE_URL``): no store, no key; each
  kernel registered with the service; the panel's calls relayed with the caller's own token;
  the spawn locked down (no user config, the policy from the service's file).
"""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from governed_kernel.policy import load_policy
from governed_kernel.resources import POLICY_ENV, default_policy_path
from governed_server.names import HUB_SERVICE_ENV

SERVICE_NAME = "governance"
APPROVE_SCOPE = "custom:governance:approve"
AUDIT_SCOPE = "custom:governance:audit"
ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"
CUSTOM_SCOPES = {
    APPROVE_SCOPE: {
        "description": "Approve or deny other people's high-risk cells in the governance service."
    },
    AUDIT_SCOPE: {"description": "Read and verify the governance audit log (each read is recorded)."},
}


def policy_groups(policy_path: Path) -> set[str]:
    """Every group the policy names in a role (the Hub must know them before roles name them)."""
    roles = load_policy(policy_path).roles
    return {*roles.analysts.groups, *roles.approvers.groups, *roles.auditors.groups}


def _roles(policy_path: Path) -> list[dict[str, Any]]:
    """Hub roles from the policy's approvers and auditors (users and groups)."""
    roles = load_policy(policy_path).roles
    granted: list[dict[str, Any]] = []
    for name, members, scope in (
        ("governance-approver", roles.approvers, APPROVE_SCOPE),
        ("governance-auditor", roles.auditors, AUDIT_SCOPE),
    ):
        granted.append({
            "name": name,
            "description": f"{scope} for the members the governance policy names",
            "scopes": [scope, ACCESS_SCOPE],
            "users": sorted(members.users),
            "groups": sorted(members.groups),
        })  # fmt: skip
    return granted


def _set(c: Any, section: str, name: str) -> Any:
    """A value set already in the config (None when unset: traitlets hands out a lazy placeholder)."""
    values = c[section]
    return values.get(name, None)


def _merge_roles(c: Any, roles: Iterable[dict[str, Any]]) -> None:
    existing = list(_set(c, "JupyterHub", "load_roles") or [])
    names = {role["name"] for role in roles}
    c.JupyterHub.load_roles = [role for role in existing if role.get("name") not in names] + list(roles)


def prepare_state_dir(state: Path, service_user: str) -> None:
    """The service user's directory: created 0700 and given to that user (when the Hub runs as
    root and the user exists; otherwise the operator does it, docs/deploy-jupyterhub.md)."""
    if os.geteuid() != 0:
        return
    try:
        account = pwd.getpwnam(service_user)
    except KeyError:
        return
    for path in (state, state / "empty"):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(path, account.pw_uid, account.pw_gid)
        path.chmod(0o700)


def configure(
    c: Any,
    *,
    db_url: str,
    policy: str | Path | None = None,
    service_user: str = SERVICE_NAME,
    state_dir: str | Path = "/var/lib/governance",
    port: int = 8890,
    python: str = sys.executable,
    groups: dict[str, list[str]] | None = None,
    authenticator_manages_groups: bool = False,
) -> dict[str, Any]:
    """Configure the Hub ``c`` for governed notebooks; returns the service entry it added.

    ``db_url``: the store (SQLAlchemy URL; PostgreSQL for a team, or ``sqlite:///<state_dir>/...``).
    ``policy``: the policy file every kernel and the service use (readable by all, writable by
    none but the operators). ``state_dir``: the service user's own directory (key, checkpoints,
    Jupyter runtime files); put the checkpoints on write-once storage in production.
    ``groups``: members of the policy's groups (added to ``load_groups``; every group the policy
    names is created, empty if not given), unless ``authenticator_manages_groups``.
    """
    policy_path = Path(policy) if policy is not None else default_policy_path()
    state = Path(state_dir)
    url = f"http://127.0.0.1:{port}"
    service = {
        "name": SERVICE_NAME,
        "url": url,
        "user": service_user,
        "cwd": str(state),
        "display": True,
        "oauth_no_confirm": True,
        "command": [
            python,
            "-m",
            "governed_server.cli",
            "serve",
            "--hub",
            "--",
            f"--GovernedServerApp.policy_path={policy_path}",
            f"--GovernedServerApp.checkpoint_dir={state / 'checkpoints'}",
            f"--GovernedServerApp.signing_key_path={state / 'audit-signing-key.pem'}",
            f"--ServerApp.root_dir={state / 'empty'}",
        ],
        "environment": {
            "GOVERNED_DB_URL": db_url,  # in the service's environment only: /proc/<pid>/environ is 0400
            "HOME": str(state),
            "JUPYTER_CONFIG_DIR": str(state / "config"),
            "JUPYTER_DATA_DIR": str(state / "data"),
            "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
            "IPYTHONDIR": str(state / "ipython"),
        },
    }
    services = [s for s in (_set(c, "JupyterHub", "services") or []) if s.get("name") != SERVICE_NAME]
    c.JupyterHub.services = [*services, service]
    c.JupyterHub.custom_scopes = {**dict(_set(c, "JupyterHub", "custom_scopes") or {}), **CUSTOM_SCOPES}
    prepare_state_dir(state, service_user)
    if not authenticator_manages_groups:
        load_groups = dict(_set(c, "JupyterHub", "load_groups") or {})
        for group in sorted(policy_groups(policy_path) | set(groups or {})):
            entry = load_groups.get(group) or {"users": []}
            entry = {"users": list(entry)} if isinstance(entry, list) else dict(entry)
            entry["users"] = sorted({*entry.get("users", []), *(groups or {}).get(group, [])})
            load_groups[group] = entry
        c.JupyterHub.load_groups = load_groups
    _merge_roles(
        c,
        [
            {"name": "user", "scopes": ["self", ACCESS_SCOPE]},
            {
                "name": "governance-service",
                "description": "The governance service: who is in which group, whose server still runs",
                "services": [SERVICE_NAME],
                "scopes": ["read:users", "read:servers", "read:groups"],
            },
            *_roles(policy_path),
        ],
    )
    # Single-user servers: client mode, their token may reach the service, the caller's OAuth token
    # carries the governance scopes the caller holds (the relay uses it), no user config.
    c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", ACCESS_SCOPE]
    c.Spawner.oauth_client_allowed_scopes = [ACCESS_SCOPE, APPROVE_SCOPE, AUDIT_SCOPE]
    environment = dict(_set(c, "Spawner", "environment") or {})
    environment.update({HUB_SERVICE_ENV: f"{url}/services/{SERVICE_NAME}/", POLICY_ENV: str(policy_path)})
    c.Spawner.environment = environment
    c.Spawner.disable_user_config = True
    c.Spawner.default_url = _set(c, "Spawner", "default_url") or "/lab"
    return service
