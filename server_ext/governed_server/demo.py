"""The two-person demo: JupyterLab with named identities for an analyst and an approver.

``jupyter governance demo`` (what ``make lab`` runs) writes a server config into a demo folder and
starts ``jupyter lab`` with it:

- :class:`~governed_server.identity_provider.NamedTokenIdentityProvider` maps one token per demo
  person to a named user (``ana``, the analyst; ``bob``, the approver, who is also an auditor);
- the demo policy (``policies/examples/demo.yaml``: the bundled PCI DSS policy naming them);
- the embedded default store (SQLite under the Jupyter data dir), the governed kernel as default.

Tokens are random, made on first use and kept in ``demo-tokens.json`` (mode 0600) in the demo
folder, so the printed URLs stay valid across restarts; ``--new-tokens`` replaces them. They are
DEMO credentials: anybody with a URL is that person. Do not use this setup for real card data.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir

from governed_kernel.resources import POLICY_ENV, policies_dir

DEMO_POLICY_NAME = "demo.yaml"
TOKENS_FILE = "demo-tokens.json"
CONFIG_FILE = "jupyter_server_config.json"
STARTUP_TIMEOUT = 120.0


@dataclass(frozen=True)
class DemoPerson:
    role: str
    username: str
    display_name: str
    description: str


DEMO_PEOPLE: tuple[DemoPerson, ...] = (
    DemoPerson("analyst", "ana", "Ana (analyst)", "runs notebooks; high-risk cells wait for approval"),
    DemoPerson("approver", "bob", "Bob (approver)", "approves or denies in the Governance panel; auditor"),
)


def demo_policy_path() -> Path:
    """The demo policy shipped with the package (``policies/examples/demo.yaml``)."""
    return policies_dir() / "examples" / DEMO_POLICY_NAME


def default_demo_dir() -> Path:
    return Path(jupyter_data_dir()) / "governance-demo"


def load_tokens(demo_dir: Path, *, renew: bool = False) -> dict[str, str]:
    """Username → token: read from the demo folder, or made (and saved, mode 0600) when missing."""
    path = demo_dir / TOKENS_FILE
    tokens: dict[str, str] = {}
    if path.is_file() and not renew:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            raw = {}
        if isinstance(raw, dict):
            tokens = {str(k): str(v) for k, v in raw.items() if isinstance(v, str) and len(v) >= 16}
    changed = False
    for person in DEMO_PEOPLE:
        if person.username not in tokens:
            tokens[person.username] = secrets.token_urlsafe(24)
            changed = True
    if changed or renew:
        demo_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(tokens, handle, indent=2)
    return tokens


def server_config(tokens: dict[str, str], policy_path: Path) -> dict[str, Any]:
    """The jupyter_server config of the demo (named identities, demo policy)."""
    users = {
        tokens[p.username]: {"username": p.username, "display_name": p.display_name} for p in DEMO_PEOPLE
    }
    return {
        "ServerApp": {
            "identity_provider_class": "governed_server.identity_provider.NamedTokenIdentityProvider",
        },
        "NamedTokenIdentityProvider": {"users": users},
        "GovernedServerApp": {"policy_path": str(policy_path)},
        "MappingKernelManager": {"default_kernel_name": "governed-python"},
    }


def write_config(demo_dir: Path, tokens: dict[str, str], policy_path: Path) -> Path:
    demo_dir.mkdir(parents=True, exist_ok=True)
    path = demo_dir / CONFIG_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(server_config(tokens, policy_path), handle, indent=2)
    return path


def person_url(base: str, path: str, token: str) -> str:
    return f"{base.rstrip('/')}/{path.lstrip('/')}?token={token}"


def banner(base: str, default_path: str, tokens: dict[str, str], policy_path: Path) -> str:
    lines = [
        "",
        "=" * 78,
        "Governed kernel: two-person demo (DEMO identities, never for real card data)",
        f"policy: {policy_path}",
        "",
    ]
    for person in DEMO_PEOPLE:
        # One JupyterLab workspace per person, so their layouts do not overwrite each other.
        path = default_path.replace("lab", f"lab/workspaces/{person.username}", 1)
        lines.append(f"  {person.display_name}: {person.description}")
        lines.append(f"    {person_url(base, path, tokens[person.username])}")
        lines.append("")
    lines += [
        "Open each URL in its own browser profile or private window (the login is a cookie).",
        "Stop with Ctrl+C. Guide: docs/ui.md",
        "=" * 78,
        "",
    ]
    return "\n".join(lines)


def lab_argv(
    *,
    config_path: Path,
    ip: str,
    port: int,
    notebook_dir: Path,
    default_url: str,
    extra: Sequence[str] = (),
) -> list[str]:
    argv = [
        sys.executable, "-m", "jupyterlab",
        f"--config={config_path}",
        "--no-browser",
        f"--ServerApp.ip={ip}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={notebook_dir}",
        f"--LabApp.default_url={default_url}",
    ]  # fmt: skip
    if os.geteuid() == 0:
        argv.append("--allow-root")
    return argv + [arg for arg in extra if arg != "--"]


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = STARTUP_TIMEOUT) -> bool:
    """True once ``url`` answers; False if the process exited or the timeout passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answers (even 403): the server is up
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    return False


def run_demo(
    *,
    demo_dir: Path,
    ip: str = "127.0.0.1",
    port: int = 8888,
    notebook_dir: Path,
    policy_path: Path | None = None,
    renew_tokens: bool = False,
    launch: bool = True,
    extra: Sequence[str] = (),
) -> int:
    """Write the demo config and (unless ``launch`` is False) run JupyterLab until interrupted."""
    policy = policy_path or demo_policy_path()
    if not policy.is_file():
        raise FileNotFoundError(f"the demo policy {policy} does not exist")
    tokens = load_tokens(demo_dir, renew=renew_tokens)
    config_path = write_config(demo_dir, tokens, policy)
    default_path = "lab/tree/demo.ipynb" if (notebook_dir / "demo.ipynb").is_file() else "lab"
    host = "127.0.0.1" if ip in ("", "0.0.0.0", "::") else ip
    base = f"http://{host}:{port}/"
    if not launch:
        print(f"demo config written to {config_path}")
        print(banner(base, default_path, tokens, policy))
        return 0
    argv = lab_argv(
        config_path=config_path,
        ip=ip,
        port=port,
        notebook_dir=notebook_dir,
        default_url="/" + default_path,
        extra=extra,
    )
    env = {**os.environ, POLICY_ENV: str(policy)}
    process = subprocess.Popen(argv, env=env)
    # A service manager's SIGTERM stops JupyterLab too (its own SIGTERM handler shuts down cleanly).
    signal.signal(signal.SIGTERM, lambda _signum, _frame: process.terminate())
    try:
        if wait_until_up(base + "api/status", process):
            print(banner(base, default_path, tokens, policy), flush=True)
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGINT)  # JupyterLab asks for confirmation on the first one
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.terminate()
            return process.wait()
