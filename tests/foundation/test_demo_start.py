"""The demo starts as the README prints it: its own links first, nothing that looks like an error,
a scratch notebook outside the repository, private files, and ``info`` describing what runs."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from demo_process import RULE, Demo, running_demo  # type: ignore[import-not-found]

from governed_server.demo import demo_policy_path

ALARMING = ("[W ", "[E ", "[C ", "Traceback", "copy and paste", "403", "Forbidden", "rror")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Any:
    before = sorted(path.name for path in (repo_root / "binder").iterdir())
    with running_demo(tmp_path_factory.mktemp("demo"), repo_root) as running:
        time.sleep(2)  # what the server logs right after it is up (a refused probe, a warning)
        yield running
    assert sorted(path.name for path in (repo_root / "binder").iterdir()) == before


def test_the_demo_prints_its_links_first_and_nothing_alarming(demo: Demo) -> None:
    banner_start = demo.lines.index(RULE)
    before_banner = [line for line in demo.lines[:banner_start] if line.strip()]
    assert before_banner == [line for line in before_banner if line.startswith("Starting JupyterLab")], (
        demo.output
    )
    for word in ALARMING:
        assert word not in demo.output, f"{word!r} in what the demo printed:\n{demo.output}"
    urls = demo.urls()
    assert set(urls) == {"Ana", "Bob"}, demo.output
    assert "/lab/workspaces/ana/tree/demo.ipynb?token=" in urls["Ana"]
    assert urls["Bob"].split("?")[0].endswith("/lab/workspaces/bob")


def test_both_links_log_in_as_their_person(demo: Demo) -> None:
    for name, username in (("Ana", "ana"), ("Bob", "bob")):
        request = urllib.request.Request(
            f"{demo.base_url}/governance/api/me", headers={"Authorization": f"token {demo.token(name)}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            me = json.load(response)
        assert me["username"] == username and me["display_name"] == name
    roles = {"Ana": ["analyst"], "Bob": ["approver", "auditor"]}
    for name, expected in roles.items():
        request = urllib.request.Request(
            f"{demo.base_url}/governance/api/me", headers={"Authorization": f"token {demo.token(name)}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["roles"] == expected


def test_the_notebook_is_a_scratch_copy_and_the_secrets_are_private(demo: Demo, repo_root: Path) -> None:
    copy = demo.demo_dir / "notebooks" / "demo.ipynb"
    assert copy.read_bytes() == (repo_root / "binder" / "demo.ipynb").read_bytes()
    assert f"notebooks: {copy.parent}" in demo.output
    assert stat.S_IMODE(demo.demo_dir.stat().st_mode) == 0o700
    for name in ("demo-tokens.json", "jupyter_server_config.json"):
        assert stat.S_IMODE((demo.demo_dir / name).stat().st_mode) == 0o600, name
    from jupyterlab_server.workspaces_handler import WorkspacesManager

    bob = WorkspacesManager(str(demo.demo_dir / "workspaces")).load("bob")
    right = bob["data"]["layout-restorer:data"]["right"]
    assert right["current"] == "governed-kernel-governance-panel" and not right["collapsed"]


def test_info_describes_the_running_demo_not_the_defaults(demo: Demo) -> None:
    cli = [sys.executable, "-m", "governed_server.cli", "info"]
    found = subprocess.run([*cli, "--json"], env=demo.env, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stdout + found.stderr
    info = json.loads(found.stdout)
    assert info["describing"] == "running server"
    assert info["policy_path"] == str(demo_policy_path())
    assert info["url"].rstrip("/") == demo.base_url and info["pid"]
    assert info["status"] == "ok" and info["mode"] == "enforce"

    named = subprocess.run(
        [*cli, "--url", demo.base_url, "--token", demo.token("Bob")],
        env=demo.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert named.returncode == 0, named.stdout + named.stderr
    assert named.stdout.splitlines()[0].split() == ["describing", "running", "server"]
    assert str(demo_policy_path()) in named.stdout

    defaults = subprocess.run([*cli, "--defaults"], env=demo.env, capture_output=True, text=True, timeout=60)
    assert "installation defaults" in defaults.stdout.splitlines()[0]
    assert "pci-dss.yaml" in defaults.stdout and str(demo_policy_path()) not in defaults.stdout

    refused = subprocess.run(
        [*cli, "--url", demo.base_url, "--token", "wrong-token"],
        env=demo.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "pass --token" in refused.stderr
