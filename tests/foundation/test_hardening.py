"""The hardened defaults, tried as an analyst who wants a way around the controls would: another
kernel, a terminal, a kernelspec of their own under the governed name, a websocket class of their
choosing. Each is closed by default and open only by an explicit setting, which is reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from governance_service import write_test_policy  # type: ignore[import-not-found]

from governed_kernel import KERNEL_NAME
from governed_server.single_user.serve_process import free_port


@contextmanager
def server(tmp_path: Path, *args: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A real ``jupyter server`` as ``pip install .`` sets it up (the package's config applies), with
    ``args`` as a user's own config would add them; yields its URL and environment."""
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}  # fmt: skip
    policy = write_test_policy(tmp_path / "policy.yaml")
    port, token = free_port(), "hardening-test-token"
    argv = [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
            f"--GovernedServerApp.policy_path={policy}",
            f"--GovernedServerApp.db_url=sqlite:///{tmp_path / 'store.sqlite'}",
            f"--GovernedServerApp.checkpoint_dir={tmp_path / 'checkpoints'}",
            f"--GovernedServerApp.signing_key_path={tmp_path / 'keys' / 'key.pem'}",
            "--GovernedServerApp.allow_unjailed_kernels=True", *args,
            *(["--allow-root"] if os.geteuid() == 0 else [])]  # fmt: skip
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                call(url, token, "GET", "api/status")
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        env["JUPYTER_TOKEN"] = token
        yield url, env
    finally:
        process.terminate()
        process.wait(timeout=30)


def call(url: str, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{url}/{path}", method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw) if raw else None
        except ValueError:
            return error.code, raw.decode(errors="replace")


def info(env: dict[str, str], url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "governed_server.cli", "info", "--json", "--url", url],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_only_the_governed_kernel_is_offered_and_started(tmp_path: Path) -> None:
    with server(tmp_path) as (url, env):
        token = env["JUPYTER_TOKEN"]
        _, specs = call(url, token, "GET", "api/kernelspecs")
        assert set(specs["kernelspecs"]) == {KERNEL_NAME}, specs["kernelspecs"].keys()
        status, answer = call(url, token, "POST", "api/kernels", {"name": "python3"})
        assert status == 403, answer
        assert "allow_ungoverned_kernels" in json.dumps(answer), "the refusal says what to do"
        _, running = call(url, token, "GET", "api/kernels")
        assert running == [], "no kernel was started"
        described = json.loads(info(env, url).stdout)
        assert described["hardening"]["kernels"] == "governed-python only"


def test_terminals_are_refused_even_when_a_config_switches_them_on(tmp_path: Path) -> None:
    with server(tmp_path, "--ServerApp.terminals_enabled=True") as (url, env):
        token = env["JUPYTER_TOKEN"]
        for method, path in (
            ("POST", "api/terminals"),
            ("GET", "api/terminals"),
            ("GET", "terminals/websocket/1"),
        ):
            status, answer = call(url, token, method, path)
            assert status == 403, (path, status, answer)
            assert "terminals are off" in json.dumps(answer), answer
        result = info(env, url)
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout)["hardening"]["terminals"].startswith("refused")


def test_allowing_terminals_is_reported_as_weakened_and_info_fails(tmp_path: Path) -> None:
    with server(
        tmp_path, "--ServerApp.terminals_enabled=True", "--GovernedServerApp.allow_terminals=True"
    ) as (
        url,
        env,
    ):
        status, _ = call(url, env["JUPYTER_TOKEN"], "POST", "api/terminals")
        assert status == 200
        result = info(env, url)
        assert result.returncode == 1, result.stdout
        assert any("terminals are allowed" in w for w in json.loads(result.stdout)["weakened"])


def test_a_kernelspec_of_the_users_own_does_not_replace_the_governed_kernel(tmp_path: Path) -> None:
    """``~/.local/share/jupyter/kernels/governed-python`` comes before the installed one in Jupyter's
    search path: with a plain ipykernel in it, "Python 3 (governed)" would be ungoverned."""
    fake = tmp_path / "home" / "data" / "kernels" / KERNEL_NAME
    fake.mkdir(parents=True)
    (fake / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (governed)", "language": "python",
    }))  # fmt: skip
    with server(tmp_path) as (url, env):
        _, specs = call(url, env["JUPYTER_TOKEN"], "GET", "api/kernelspecs")
        argv = specs["kernelspecs"][KERNEL_NAME]["spec"]["argv"]
        assert "governed_kernel" in argv and "ipykernel_launcher" not in argv, argv


def test_another_websocket_class_in_the_config_is_replaced_by_the_guard(jp_serverapp: Any) -> None:
    from governed_server.single_user.guard import GuardedKernelConnection

    assert jp_serverapp.web_app.settings["kernel_websocket_connection_class"] is GuardedKernelConnection


@pytest.fixture
def jp_server_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"governed_server": True},
            "kernel_websocket_connection_class": "tests_unguarded_connection.UnguardedConnection",
        },
        "GovernedServerApp": {
            "policy_path": str(write_test_policy(tmp_path / "policy.yaml")),
            "db_url": f"sqlite:///{tmp_path / 'store.sqlite'}",
            "checkpoint_dir": str(tmp_path / "checkpoints"),
            "signing_key_path": str(tmp_path / "keys" / "key.pem"),
        },
    }
