"""A real JupyterHub team deployment for tests and ``make hub``: real OS users, configurable-http-proxy,
LocalProcessSpawner, the governance service as its own OS user on a password-protected PostgreSQL.

Everything is configured by ``governed_server.hub.configure`` exactly as docs/deploy-jupyterhub.md
tells operators; the stack adds only what a test needs: users that log in with a password
(DummyAuthenticator), and an admin service token to mint each person's tokens and start servers.
Needs root (the Hub starts processes as other users) and a Python every user can run
(``.ci/hub-python.sh``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
HUB_PYTHON_ENV = "GOVERNED_HUB_PYTHON"
DEFAULT_HUB_PYTHON = (
    Path("/opt/governed-hub") / hashlib.sha1(str(REPO).encode()).hexdigest()[:12] / "venv" / "bin" / "python"
)
"""Where .ci/hub-python.sh puts the venv of this checkout."""
PEOPLE = {
    "analyst": "gkh-ana",
    "approver": "gkh-bob",
    "approver2": "gkh-carol",
    "auditor": "gkh-dave",
}
SERVICE_USER = "gkh-gov"
GROUPS = {
    "card-data-analysts": [PEOPLE["analyst"]],
    "card-data-approvers": [PEOPLE["approver"], PEOPLE["approver2"]],
    "compliance": [PEOPLE["auditor"]],
}
STARTUP_TIMEOUT_S = 120


class HubUnavailable(RuntimeError):
    pass


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


HUB_WITNESS_GRACE_S = 3.0
"""The tests' Hub service waits this long (30 s by default) for the second witness of a cell."""


def hub_python() -> Path:
    """The Python the Hub's users run; it must be executable by someone who is not root."""
    path = Path(os.environ.get(HUB_PYTHON_ENV) or DEFAULT_HUB_PYTHON)
    probe = subprocess.run(
        ["runuser", "-u", "nobody", "--", str(path), "-c", "import governed_server.hub, jupyterhub"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        raise HubUnavailable(
            f"{path} cannot be run by other OS users with governed-kernel and jupyterhub installed "
            f"({probe.stderr.strip()[-300:]}): run `bash .ci/hub-python.sh` (as root) first"
        )
    return path


def ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
        return pwd.getpwnam(name)


@dataclass
class HubStack:
    db_url: str
    """The governance store (the service user's; the test's cluster requires a password)."""
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gkh-")))
    port: int = field(default_factory=free_port)
    service_port: int = field(default_factory=free_port)
    admin_token: str = field(default_factory=lambda: secrets.token_hex(24))
    password: str = field(default_factory=lambda: secrets.token_hex(8))
    process: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    people: dict[str, str] = field(default_factory=lambda: dict(PEOPLE))
    """Role name → OS user (``user_url``, ``token``... take either); the Hub allows these users only."""
    groups: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in GROUPS.items()})
    """Hub groups and their members (the policy's roles name the groups)."""
    service_args: list[str] = field(default_factory=list)
    """More ``--GovernedServerApp.x=y`` options for the service's command line."""
    service_user: str = SERVICE_USER
    """The governance service's OS user. :meth:`stop` ends every process of it and of ``people``,
    so two stacks on one machine need their own users."""

    def os_user(self, who: str) -> str:
        return self.people.get(who, who)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def service_api(self) -> str:
        """The service's API through the Hub's proxy, as people and CLIs reach it."""
        return f"{self.url}/services/governance/governance/api/"

    @property
    def state_dir(self) -> Path:
        return self.root / "governance"

    @property
    def policy_path(self) -> Path:
        return self.root / "policy.yaml"

    def user_url(self, who: str) -> str:
        return f"{self.url}/user/{self.os_user(who)}/"

    def write_config(self) -> Path:
        python = hub_python()
        ensure_user(self.service_user)
        for name in self.people.values():
            ensure_user(name)
        self.root.chmod(0o755)  # the policy file is read by every server
        shutil.copy(REPO / "policies" / "pci-dss.yaml", self.policy_path)
        self.policy_path.chmod(0o644)
        hub_dir = self.root / "hub"
        hub_dir.mkdir(mode=0o700)
        config = hub_dir / "jupyterhub_config.py"
        config.write_text(
            textwrap.dedent(
                f"""
                from governed_server.hub import configure

                c.JupyterHub.ip = "127.0.0.1"
                c.JupyterHub.port = {self.port}
                c.JupyterHub.hub_port = {free_port()}
                c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
                c.JupyterHub.db_url = "sqlite:///{hub_dir}/jupyterhub.sqlite"
                c.JupyterHub.cookie_secret_file = "{hub_dir}/cookie_secret"
                c.ConfigurableHTTPProxy.pid_file = "{hub_dir}/proxy.pid"
                c.JupyterHub.authenticator_class = "dummy"
                c.DummyAuthenticator.password = {self.password!r}
                c.Authenticator.allowed_users = {sorted(self.people.values())!r}
                c.Spawner.cmd = [{str(python.parent / "jupyterhub-singleuser")!r}]
                # browser tests read window.jupyterapp
                c.Spawner.args = ["--LabApp.expose_app_in_browser=True"]
                c.Spawner.start_timeout = 90
                c.Spawner.http_timeout = 90
                c.JupyterHub.services = [{{"name": "test-admin", "api_token": {self.admin_token!r}}}]
                c.JupyterHub.load_roles = [{{
                    "name": "test-admin", "services": ["test-admin"],
                    "scopes": ["admin:users", "admin:servers", "tokens", "read:users", "read:servers"],
                }}]
                entry = configure(
                    c, db_url={self.db_url!r}, policy={str(self.policy_path)!r},
                    service_user={self.service_user!r}, state_dir={str(self.state_dir)!r},
                    port={self.service_port}, python={str(python)!r}, groups={self.groups!r},
                )
                entry["command"] += {self.service_args!r}
                """
            )
        )
        return config

    def start(self) -> HubStack:
        if os.geteuid() != 0:
            raise HubUnavailable("the JupyterHub profile needs root (it starts processes as other users)")
        if shutil.which("configurable-http-proxy") is None:
            raise HubUnavailable(
                "configurable-http-proxy is not installed: npm install -g configurable-http-proxy"
            )
        config = self.write_config()
        python = hub_python()
        log = (self.root / "hub.log").open("wb")
        self.process = subprocess.Popen(
            [str(python), "-m", "jupyterhub", "-f", str(config)],
            cwd=config.parent, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HubUnavailable(f"jupyterhub exited:\n{self.log_tail()}")
            try:
                if httpx.get(self.service_api + "health", timeout=2).status_code in (200, 401, 403):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise HubUnavailable(f"the Hub or its governance service did not start:\n{self.log_tail()}")

    def log_tail(self, size: int = 6000) -> str:
        try:
            return (self.root / "hub.log").read_text(errors="replace")[-size:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        subprocess.run(["pkill", "-u", self.service_user], check=False)
        for name in self.people.values():
            subprocess.run(["pkill", "-u", name], check=False)

    # -- the Hub API -----------------------------------------------------------------------------

    def hub_api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return httpx.request(method, f"{self.url}/hub/api/{path}", headers=headers, timeout=30, **kwargs)

    def token(self, who: str, scopes: list[str] | None = None) -> str:
        """A personal API token of ``who`` (with all their permissions unless ``scopes``)."""
        key = f"{who}:{','.join(scopes or [])}"
        if key not in self.tokens:
            name = self.os_user(who)
            body: dict[str, Any] = {"note": "test"}
            if scopes is not None:
                body["scopes"] = scopes
            response = self.hub_api("POST", f"users/{name}/tokens", json=body)
            response.raise_for_status()
            self.tokens[key] = response.json()["token"]
        return self.tokens[key]

    def start_server(self, who: str, timeout: float = 120) -> None:
        name = self.os_user(who)
        response = self.hub_api("POST", f"users/{name}/server")
        if response.status_code not in (201, 202, 400):  # 400: already running
            raise HubUnavailable(f"cannot start {name}'s server: {response.status_code} {response.text}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.hub_api("GET", f"users/{name}").json()
            server = (model.get("servers") or {}).get("")
            if server and server.get("ready"):
                return
            time.sleep(0.5)
        raise HubUnavailable(f"{name}'s server did not start:\n{self.log_tail()}")

    def stop_server(self, who: str) -> None:
        name = self.os_user(who)
        self.hub_api("DELETE", f"users/{name}/server")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            model = self.hub_api("GET", f"users/{name}").json()
            if not model.get("servers"):
                return
            time.sleep(0.5)

    def service(self, who: str) -> httpx.Client:
        """A client of the governance service's API with ``who``'s own Hub token."""
        return httpx.Client(
            base_url=self.service_api, headers={"Authorization": f"token {self.token(who)}"}, timeout=30
        )

    def server(self, who: str, token_of: str | None = None) -> httpx.Client:
        """A client of ``who``'s single-user server (through the proxy) with a token of ``token_of``."""
        return httpx.Client(
            base_url=self.user_url(who), headers={"Authorization": f"token {self.token(token_of or who)}"},
            timeout=60,
        )  # fmt: skip


def main() -> int:
    """``make hub``: start the profile and say how each person logs in (Ctrl-C stops it)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from pgcluster import PgCluster  # type: ignore[import-not-found]

    cluster = PgCluster(durable=True, password=secrets.token_hex(12)).start()
    stack = HubStack(db_url=cluster.create_database("governance"))
    try:
        stack.start()
        for who in stack.people:
            stack.start_server(who)
        print(json.dumps({"hub": stack.url, "password": stack.password, "users": stack.people}, indent=2))
        print(f"\nOpen {stack.url}/hub/login and log in as any user above with the password shown.")
        if stack.process is not None:
            stack.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
