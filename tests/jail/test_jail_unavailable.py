"""Where the OS cannot jail kernels, enforce mode refuses governed kernels with an error that says
what happened and what to do, unless a setting accepts the risk; health and ``info`` say which.

No bubblewrap is simulated with a bwrap path that does not exist (the trial at start fails the
same way as on a machine without it, or in a container without namespaces).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from governance_service import TOKENS, write_test_policy  # type: ignore[import-not-found]
from jail_helpers import auth, run, start_kernel, stop_kernel  # type: ignore[import-not-found]
from tornado.httpclient import HTTPClientError

from governed_server.cli.info import jail_text, weakened
from governed_server.single_user.serve_process import ServeProcess

pytestmark = pytest.mark.jail

MISSING_BWRAP = "/nonexistent/bin/bwrap"


async def health(jp_fetch: Any) -> dict[str, Any]:
    response = await jp_fetch("governance", "api", "health", headers=auth("dave"))
    body: dict[str, Any] = json.loads(response.body)
    return body


@pytest.mark.parametrize("policy_mode", ["enforce"])
@pytest.mark.parametrize("jail_settings", [{"bwrap_path": MISSING_BWRAP}])
async def test_enforce_mode_refuses_governed_kernels_without_the_jail(
    policy_mode: str, jail_settings: dict[str, Any], governed_kernelspec: None, jp_fetch: Any, governance: Any
) -> None:
    with pytest.raises(HTTPClientError) as refused:
        await start_kernel(jp_fetch)
    assert refused.value.code == 503
    assert refused.value.response is not None
    message = json.loads(refused.value.response.body)["message"]
    for words in ("not started", "bubblewrap is not installed", MISSING_BWRAP, "apt-get install bubblewrap",
                  "GovernedServerApp.allow_unjailed_kernels = True"):  # fmt: skip
        assert words in message, message
    # A notebook opening (a session, what JupyterLab asks for) gets the same answer.
    with pytest.raises(HTTPClientError) as session:
        body = {"path": "a.ipynb", "type": "notebook", "kernel": {"name": "governed-python"}}
        await jp_fetch("api", "sessions", method="POST", body=json.dumps(body), headers=auth("alice"))
    assert session.value.response is not None
    assert "allow_unjailed_kernels" in json.loads(session.value.response.body)["message"]
    assert governance.kernel_jail.refusal("enforce") is not None

    state = await health(jp_fetch)
    assert state["jail"].startswith("none: bubblewrap is not installed"), state
    assert state["jail_kernels"] == "refused" and state["jail_risk_accepted"] is False
    assert weakened(state) and "governed kernels are refused" in str(jail_text(state))


@pytest.mark.parametrize("policy_mode", ["enforce"])
@pytest.mark.parametrize("jail_settings", [{"bwrap_path": MISSING_BWRAP, "allow_unjailed_kernels": True}])
async def test_with_the_risk_accepted_kernels_start_unjailed_and_health_says_so(
    policy_mode: str,
    jail_settings: dict[str, Any],
    governed_kernelspec: None,
    jp_fetch: Any,
    jp_serverapp: Any,
    governance: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-token-never-in-a-kernel")
    kernel_id = await start_kernel(jp_fetch)
    try:
        ran = await run(
            jp_serverapp, kernel_id, "import os, sys\nprint(sorted(os.environ), sys.flags.isolated)"
        )
    finally:
        await stop_kernel(jp_fetch, kernel_id)
    assert ran.status == "ok", ran.text
    # Without the jail the environment is still an allow list, and Python still isolated.
    assert "JUPYTERHUB_API_TOKEN" not in ran.stdout and "GOVERNED_KERNEL_TOKEN" in ran.stdout
    assert ran.stdout.strip().endswith(" 1"), ran.stdout

    state = await health(jp_fetch)
    assert state["jail"].startswith("none: "), state
    assert state["jail_risk_accepted"] is True and state["jail_kernels"] == "unjailed"
    assert "risk accepted" in str(jail_text(state)) and weakened(state)


@pytest.mark.parametrize("jail_settings", [{"bwrap_path": MISSING_BWRAP}])
async def test_observe_mode_starts_kernels_without_the_jail(
    jail_settings: dict[str, Any],
    governed_kernelspec: None,
    jp_fetch: Any,
    jp_serverapp: Any,
    governance: Any,
) -> None:
    kernel_id = await start_kernel(jp_fetch)
    await stop_kernel(jp_fetch, kernel_id)
    state = await health(jp_fetch)
    assert state["jail_kernels"] == "unjailed" and state["jail_risk_accepted"] is False
    assert not weakened(state)  # observe mode reports it, it does not count as weakened enforcement


def test_info_reports_the_running_servers_jail(tmp_path: Path) -> None:
    """``jupyter governance info`` asks a running server (here ``serve``) and prints its jail."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    users = {token: name for name, token in TOKENS.items()}
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"NamedTokenIdentityProvider": {"users": users}})
    )
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    server = ServeProcess(
        policy_path=write_test_policy(tmp_path / "policy.yaml"),
        db_url=f"sqlite:///{tmp_path / 'store' / 'governance.sqlite'}",
        log_path=tmp_path / "serve.log",
        server_args=[
            f"--GovernedServerApp.checkpoint_dir={tmp_path / 'checkpoints'}",
            f"--GovernedServerApp.signing_key_path={tmp_path / 'keys' / 'audit.pem'}",
            "--ServerApp.identity_provider_class=governed_server.identity_provider.NamedTokenIdentityProvider",
            f"--GovernedServerApp.bwrap_path={MISSING_BWRAP}",
            "--GovernedServerApp.allow_unjailed_kernels=True",
        ],
        env=env,
    ).start()
    try:
        cli = [
            sys.executable,
            "-m",
            "governed_server.cli",
            "info",
            "--url",
            server.url,
            "--token",
            TOKENS["dave"],
        ]
        shown = subprocess.run(cli, capture_output=True, text=True, timeout=60, env=env, check=False)
        as_json = subprocess.run(
            [*cli, "--json"], capture_output=True, text=True, timeout=60, env=env, check=False
        )
    finally:
        server.stop()
    assert shown.returncode == 1, shown.stdout + shown.stderr  # enforce mode without the jail: weakened
    line = next(line for line in shown.stdout.splitlines() if line.startswith("jail "))
    assert "none: bubblewrap is not installed" in line and "risk accepted" in line, shown.stdout
    info = json.loads(as_json.stdout)
    assert info["jail_risk_accepted"] is True and info["jail_kernels"] == "unjailed"


def test_the_demo_accepts_the_risk_where_there_is_no_jail_and_says_so_in_one_line(tmp_path: Path) -> None:
    from governed_server.demo import banner, demo_policy_path, server_config
    from governed_server.single_user.jail_probe import BUBBLEWRAP, JailState, disabled, probe

    tokens = {"ana": "a" * 24, "bob": "b" * 24, "_server": "s" * 24}
    policy = demo_policy_path()
    without = probe(MISSING_BWRAP)
    config = server_config(tokens, policy, workspaces_dir=tmp_path / "w", demo_dir=tmp_path, jail=without)
    assert config["GovernedServerApp"]["allow_unjailed_kernels"] is True
    assert config["GovernedServerApp"]["jail_hidden_paths"] == [str(tmp_path)]
    jailed = server_config(
        tokens, policy, workspaces_dir=tmp_path / "w", jail=JailState(BUBBLEWRAP, "/usr/bin/bwrap")
    )
    assert "allow_unjailed_kernels" not in jailed["GovernedServerApp"]

    alarming = ("[W ", "[E ", "[C ", "Traceback", "rror", "WARN", "denied", "fail")
    for state in (
        without,
        disabled("bubblewrap cannot create the jail's namespaces here (Operation not permitted)"),
    ):
        text = banner("http://127.0.0.1:8888/", "demo.ipynb", tokens, policy, tmp_path, state)
        lines = [line for line in text.splitlines() if " the jail" in line]
        assert len(lines) == 1 and "without the jail" in lines[0] and "accepted" in lines[0], lines
        assert not [word for word in alarming if word in lines[0]], lines[0]
