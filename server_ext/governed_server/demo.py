"""The two-person demo: JupyterLab with named identities for an analyst and an approver.

``jupyter governance demo`` (what ``make lab`` runs) writes a server config into a demo folder and
starts ``jupyter lab`` with it:

- :class:`~governed_server.identity_provider.NamedTokenIdentityProvider` maps one token per demo
  person to a named user (``ana``, the analyst; ``bob``, the approver, who is also an auditor);
- the demo policy (``policies/examples/demo.yaml``: the bundled PCI DSS policy naming them);
- the embedded default store (SQLite under the Jupyter data dir), the governed kernel as default;
- the kernel jail (bubblewrap) when this machine has it; otherwise (no bubblewrap, a container
  without namespaces) the demo accepts unjailed kernels and its banner says so in one line;
- a scratch copy of the demo notebook in the demo folder (outside any repository: what people save
  while trying the demo stays there), one JupyterLab workspace per person (the analyst's opens the
  notebook; the approver's opens the Governance panel on its queue).

Tokens are random, made on first use and kept in ``demo-tokens.json`` (mode 0600) in the demo
folder, so the printed URLs stay valid across restarts; ``--new-tokens`` replaces them. They are
DEMO credentials: anybody with a URL is that person. Do not use this setup for real card data.
The server's own token (for ``jupyter governance info`` and scripts) is kept there too, never printed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
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
from governed_server.file_modes import tighten_all
from governed_server.single_user.jail_probe import JailState, probe

DEMO_POLICY_NAME = "demo.yaml"
DEMO_NOTEBOOK_NAME = "demo.ipynb"
TOKENS_FILE = "demo-tokens.json"
CONFIG_FILE = "jupyter_server_config.json"
NOTEBOOKS_DIR = "notebooks"
WORKSPACES_DIR = "workspaces"
SERVER_TOKEN_KEY = "_server"
"""Key of the server's own token in the tokens file (no demo username starts with "_")."""
STARTUP_TIMEOUT = 120.0
PANEL_ID = "governed-kernel-governance-panel"
"""The Governance side panel's widget id (labextension/src/panel.ts)."""
_PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class DemoPerson:
    role: str
    username: str
    display_name: str
    description: str
    opens_notebook: bool
    """The analyst's link opens the demo notebook; the approver's opens the approval queue."""


DEMO_PEOPLE: tuple[DemoPerson, ...] = (
    DemoPerson("analyst", "ana", "Ana", "runs the notebook; high-risk cells wait for approval", True),
    DemoPerson("approver", "bob", "Bob", "approves or denies in the Governance panel; auditor", False),
)


def demo_policy_path() -> Path:
    """The demo policy shipped with the package (``policies/examples/demo.yaml``)."""
    return policies_dir() / "examples" / DEMO_POLICY_NAME


def demo_notebook_source() -> Path:
    """The demo notebook shipped with the package, or ``binder/demo.ipynb`` of a source checkout."""
    installed = _PACKAGE_DIR / "demo_notebook" / DEMO_NOTEBOOK_NAME
    if installed.is_file():
        return installed
    return _PACKAGE_DIR.parent.parent / "binder" / DEMO_NOTEBOOK_NAME


def default_demo_dir() -> Path:
    return Path(jupyter_data_dir()) / "governance-demo"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (the folder too: 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def load_tokens(demo_dir: Path, *, renew: bool = False) -> dict[str, str]:
    """Username → token (and the server's own token): read from the demo folder, or made (and saved,
    mode 0600) when missing."""
    path = demo_dir / TOKENS_FILE
    tokens: dict[str, str] = {}
    tighten_all([(demo_dir, "demo folder"), (path, "demo tokens")])
    if path.is_file() and not renew:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            raw = {}
        if isinstance(raw, dict):
            tokens = {str(k): str(v) for k, v in raw.items() if isinstance(v, str) and len(v) >= 16}
    changed = False
    for key in (*(person.username for person in DEMO_PEOPLE), SERVER_TOKEN_KEY):
        if key not in tokens:
            tokens[key] = secrets.token_urlsafe(24)
            changed = True
    if changed or renew:
        _write_private(path, json.dumps(tokens, indent=2))
    return tokens


def server_config(
    tokens: dict[str, str],
    policy_path: Path,
    *,
    workspaces_dir: Path,
    own_server_token: bool = True,
    demo_dir: Path | None = None,
    jail: JailState | None = None,
) -> dict[str, Any]:
    """The jupyter_server config of the demo (named identities, demo policy, workspaces, jail).

    ``own_server_token``: set the server's token to the saved one, so jupyter_server does not make
    one up and print it (an anonymous login that is neither demo person). Binder, whose hub logs
    people in, writes the config without it. ``jail``: where this machine cannot jail kernels, the
    demo accepts running them without (``allow_unjailed_kernels``), and its banner says so.
    """
    users = {
        tokens[p.username]: {"username": p.username, "display_name": p.display_name} for p in DEMO_PEOPLE
    }
    provider: dict[str, Any] = {"users": users}
    if own_server_token:
        provider["token"] = tokens[SERVER_TOKEN_KEY]
    return {
        "ServerApp": {
            "identity_provider_class": "governed_server.identity_provider.NamedTokenIdentityProvider",
            # jupyter_server's default keep-alive timeout (3 pings, 90 s) is longer than its ping
            # interval, which tornado warns about at every websocket: the same 30 s, silently.
            "tornado_settings": {"ws_ping_timeout": 30_000},
        },
        "NamedTokenIdentityProvider": provider,
        "GovernedServerApp": governed_settings(policy_path, demo_dir, jail),
        "MappingKernelManager": {"default_kernel_name": "governed-python"},
        # Kernel channels as sockets in the runtime folder (0700), not on loopback TCP where any
        # local user could connect (and ipykernel warns that they are unencrypted).
        "KernelManager": {"transport": "ipc"},
        # (No news pop-up over the queue: the package's Lab settings turn news and update checks off.)
        "LabApp": {"workspaces_dir": str(workspaces_dir)},
    }


def governed_settings(policy_path: Path, demo_dir: Path | None, jail: JailState | None) -> dict[str, Any]:
    settings: dict[str, Any] = {"policy_path": str(policy_path)}
    if demo_dir is not None:  # the tokens and this config: never in a kernel's jail
        settings["jail_hidden_paths"] = [str(demo_dir)]
    if jail is not None and not jail.available:
        settings["allow_unjailed_kernels"] = True
    return settings


def jail_line(jail: JailState) -> str:
    """The banner's one line about the kernel jail (plain words: nothing that reads as an error)."""
    if jail.available:
        return "kernels:   in the bubblewrap jail (no access to the store, key or tokens)"
    why = "bubblewrap is not installed" if "not installed" in jail.reason else "no namespaces here"
    return f"kernels:   without the jail ({why}): accepted for this demo, see docs/jail.md"


def workspace(person: DemoPerson) -> dict[str, Any]:
    """The JupyterLab workspace a person's link opens: the Governance panel open on the right (its
    first tab is the person's: the queue for an approver). The analyst's link also names the notebook."""
    return {
        "data": {
            "layout-restorer:data": {
                "main": {"dock": {"type": "tab-area", "currentIndex": 0, "widgets": []}},
                "left": {"collapsed": not person.opens_notebook, "visible": True, "widgets": ["filebrowser"]},
                "right": {"collapsed": False, "visible": True, "current": PANEL_ID, "widgets": [PANEL_ID]},
                # Left sidebar, main area, right sidebar: the approver's queue gets room to read cells.
                "relativeSizes": [0.18, 0.57, 0.25] if person.opens_notebook else [0.0, 0.55, 0.45],
            },
        },
        "metadata": {"id": person.username},
    }


def write_workspaces(workspaces_dir: Path) -> None:
    """One workspace per person, written at every start: each link opens the view made for its role
    (JupyterLab's workspace manager names and checks the files)."""
    from jupyterlab_server.workspaces_handler import WorkspacesManager

    manager = WorkspacesManager(str(workspaces_dir))
    for person in DEMO_PEOPLE:
        manager.save(person.username, json.dumps(workspace(person), indent=2))


def write_config(
    demo_dir: Path,
    tokens: dict[str, str],
    policy_path: Path,
    *,
    own_server_token: bool = True,
    jail: JailState | None = None,
) -> Path:
    path = demo_dir / CONFIG_FILE
    config = server_config(
        tokens,
        policy_path,
        workspaces_dir=demo_dir / WORKSPACES_DIR,
        own_server_token=own_server_token,
        demo_dir=demo_dir,
        jail=jail,
    )
    _write_private(path, json.dumps(config, indent=2))
    return path


def prepare_notebooks(demo_dir: Path, *, fresh: bool = False) -> Path:
    """The folder the demo serves: a scratch copy of the demo notebook, kept across restarts (so
    your edits survive) unless ``fresh``. The copy is trusted (signed, as ``jupyter trust`` does):
    it is the project's own notebook, and JupyterLab would warn about it at every opening."""
    import nbformat
    from nbformat.sign import NotebookNotary

    folder = demo_dir / NOTEBOOKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / DEMO_NOTEBOOK_NAME
    source = demo_notebook_source()
    if source.is_file() and target.exists() and not fresh and _holds_card_numbers(target):
        # A copy made by an older demo, which stored its test card numbers: the server would serve
        # it masked and read-only. Kept aside (it is the user's), replaced by the current one.
        aside = target.with_name(target.name + ".card-numbers.bak")
        target.replace(aside)
        print(f"demo: {target.name} held card numbers (an older demo's copy); moved to {aside.name}")
    if source.is_file() and (fresh or not target.exists()):
        shutil.copyfile(source, target)
        NotebookNotary().sign(nbformat.read(target, as_version=4))  # type: ignore[no-untyped-call]
    return folder


def _holds_card_numbers(path: Path) -> bool:
    from governed_kernel.masking import Masker, mask_file_bytes

    try:
        return mask_file_bytes(path.read_bytes(), path.name, Masker())[1].total > 0
    except (OSError, ValueError):
        return False


def person_url(base: str, path: str, token: str) -> str:
    return f"{base.rstrip('/')}/{path.lstrip('/')}?token={token}"


def person_path(person: DemoPerson, notebook: str | None) -> str:
    """``lab/workspaces/<name>``, plus the notebook for the analyst."""
    path = f"lab/workspaces/{person.username}"
    return f"{path}/tree/{notebook}" if notebook and person.opens_notebook else path


def banner(
    base: str,
    notebook: str | None,
    tokens: dict[str, str],
    policy_path: Path,
    folder: Path,
    jail: JailState | None = None,
) -> str:
    lines = [
        "",
        "=" * 78,
        "Governed kernel: two-person demo (DEMO identities, never for real card data)",
        "",
    ]
    for person in DEMO_PEOPLE:
        lines.append(f"  {person.display_name} ({person.role}): {person.description}")
        lines.append(f"    {person_url(base, person_path(person, notebook), tokens[person.username])}")
        lines.append("")
    lines += [
        "Open each URL in its own browser profile or private window (the login is a cookie).",
        f"notebooks: {folder} (a scratch copy: your edits stay there)",
        f"policy:    {policy_path}",
        *([jail_line(jail)] if jail is not None else []),
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
    verbose: bool = False,
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
    if not verbose:  # the demo's links come first; warnings and errors still show (unless set in extra)
        argv += [
            f"--{app}.log_level=WARN"
            for app in ("ServerApp", "LabApp", "GovernedServerApp")
            if not any(arg.startswith(f"--{app}.log_level") for arg in extra)
        ]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    return argv + [arg for arg in extra if arg != "--"]


def wait_until_up(
    url: str, process: subprocess.Popen[bytes], token: str, timeout: float = STARTUP_TIMEOUT
) -> bool:
    """True once ``url`` answers (asked with the server's token, so nothing is logged as refused);
    False if the process exited or the timeout passed."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(request, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answers: the server is up
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    return False


def run_demo(
    *,
    demo_dir: Path,
    ip: str = "127.0.0.1",
    port: int = 8888,
    notebook_dir: Path | None = None,
    policy_path: Path | None = None,
    renew_tokens: bool = False,
    fresh_notebook: bool = False,
    launch: bool = True,
    verbose: bool = False,
    extra: Sequence[str] = (),
) -> int:
    """Write the demo config and (unless ``launch`` is False) run JupyterLab until interrupted.

    ``notebook_dir``: the folder to serve; by default a scratch copy of the demo notebook in
    ``demo_dir`` (never a folder of the repository).
    """
    policy = policy_path or demo_policy_path()
    if not policy.is_file():
        raise FileNotFoundError(f"the demo policy {policy} does not exist")
    tokens = load_tokens(demo_dir, renew=renew_tokens)
    jail = probe()
    config_path = write_config(demo_dir, tokens, policy, own_server_token=launch, jail=jail)
    folder = notebook_dir if notebook_dir is not None else prepare_notebooks(demo_dir, fresh=fresh_notebook)
    notebook = DEMO_NOTEBOOK_NAME if (folder / DEMO_NOTEBOOK_NAME).is_file() else None
    write_workspaces(demo_dir / WORKSPACES_DIR)
    host = "127.0.0.1" if ip in ("", "0.0.0.0", "::") else ip
    base = f"http://{host}:{port}/"
    text = banner(base, notebook, tokens, policy, folder, jail)
    if not launch:
        print(f"demo config written to {config_path}")
        print(text)
        return 0
    argv = lab_argv(
        config_path=config_path,
        ip=ip,
        port=port,
        notebook_dir=folder,
        default_url="/lab",
        verbose=verbose,
        extra=extra,
    )
    env = {**os.environ, POLICY_ENV: str(policy)}
    print(f"Starting JupyterLab for the demo on {base} ...", flush=True)
    process = subprocess.Popen(argv, env=env)
    # A service manager's SIGTERM stops JupyterLab too (its own SIGTERM handler shuts down cleanly).
    signal.signal(signal.SIGTERM, lambda _signum, _frame: process.terminate())
    try:
        if wait_until_up(base + "api/status", process, tokens[SERVER_TOKEN_KEY]):
            print(text, flush=True)
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGINT)  # JupyterLab asks for confirmation on the first one
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.terminate()
            return process.wait()
