"""`pip install .` (not editable) into a brand-new virtualenv gives a complete, enabled install."""

from __future__ import annotations

import json
import os
import re
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from governed_kernel import KERNEL_NAME, __version__

pytestmark = [pytest.mark.install, pytest.mark.timeout(900)]


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def plain(result: subprocess.CompletedProcess[str]) -> str:
    """Both output streams without colour codes (Jupyter's listings print to stderr, in colour)."""
    return ANSI_ESCAPE.sub("", result.stdout + result.stderr)


class FreshEnv:
    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        # An empty HOME and Jupyter dirs: only what the package installed into the venv counts.
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("JUPYTER", "PYTHON", "VIRTUAL_ENV", "GOVERNED"))
        }
        self.env.update(
            HOME=str(home),
            JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
            JUPYTER_DATA_DIR=str(home / "data"),
            PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
        )

    def run(
        self, *args: str | Path, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(a) for a in args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=cwd or self.root,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Iterator[FreshEnv]:
    base = tmp_path_factory.mktemp("fresh")
    venv.create(base / "venv", with_pip=True, clear=True)
    env = FreshEnv(base / "venv", base / "home")
    env.run(env.bin / "python", "-m", "pip", "install", "--quiet", str(repo_root))
    yield env


def test_one_distribution_ships_both_packages_policies_and_labextension(fresh_env: FreshEnv) -> None:
    files = fresh_env.run(fresh_env.bin / "python", "-m", "pip", "show", "--files", "governed-kernel").stdout
    assert f"Version: {__version__}" in files
    for expected in (
        "governed_kernel/__init__.py",
        "governed_server/__init__.py",
        "governed_kernel/policies/pci-dss.yaml",
        "share/jupyter/kernels/governed-python/kernel.json",
        "share/jupyter/kernels/governed-python/logo-64x64.png",
        "etc/jupyter/jupyter_server_config.d/governed_server.json",
        "share/jupyter/labextensions/@governed-kernel/labextension/package.json",
        "share/jupyter/labextensions/@governed-kernel/labextension/install.json",
        "governed_server/demo_notebook/demo.ipynb",
        "share/jupyter/lab/settings/overrides.d/governed-kernel.json",
    ):
        assert expected in files, expected
    assert "share/jupyter/labextensions/@governed-kernel/labextension/static/remoteEntry." in files


def test_the_installed_server_config_turns_terminals_off(fresh_env: FreshEnv) -> None:
    config = fresh_env.root / "etc" / "jupyter" / "jupyter_server_config.d" / "governed_server.json"
    assert json.loads(config.read_text())["ServerApp"]["terminals_enabled"] is False


def test_kernelspec_is_listed(fresh_env: FreshEnv) -> None:
    specs = json.loads(fresh_env.run("jupyter", "kernelspec", "list", "--json").stdout)["kernelspecs"]
    assert KERNEL_NAME in specs
    spec = specs[KERNEL_NAME]
    assert Path(spec["resource_dir"]).is_relative_to(fresh_env.root)
    assert spec["spec"]["display_name"] == "Python 3 (governed)"
    assert spec["spec"]["interrupt_mode"] == "message"


def test_server_extension_is_enabled_and_loads(fresh_env: FreshEnv) -> None:
    listing = plain(fresh_env.run("jupyter", "server", "extension", "list"))
    assert "governed_server enabled" in listing, listing
    assert f"governed_server {__version__} OK" in listing, listing


def test_labextension_is_enabled(fresh_env: FreshEnv) -> None:
    listing = plain(fresh_env.run("jupyter", "labextension", "list"))
    line = next((ln for ln in listing.splitlines() if "@governed-kernel/labextension" in ln), "")
    assert f"v{__version__}" in line and "enabled" in line and "OK" in line, listing


def test_cli_help_version_and_unknown_command(fresh_env: FreshEnv) -> None:
    help_text = fresh_env.run("jupyter", "governance", "--help").stdout
    assert "usage: jupyter governance" in help_text
    version = fresh_env.run("jupyter", "governance", "--version").stdout.strip()
    assert version == f"jupyter governance {__version__}"
    unknown = fresh_env.run("jupyter", "governance", "frobnicate", check=False)
    assert unknown.returncode == 2
    assert "invalid choice: 'frobnicate'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_installed_package_runs_a_notebook_under_governance(fresh_env: FreshEnv) -> None:
    """`jupyter governance run` in the fresh install: embedded service, governed kernel, audit, exit 0."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(cells=[new_code_cell("import sys\nprint(sys.prefix)")])
    path = fresh_env.root.parent / "check.ipynb"
    nbformat.write(notebook, path)
    output = fresh_env.root.parent / "check.out.ipynb"
    store = f"sqlite:///{fresh_env.root.parent / 'store' / 'governance.sqlite'}"
    fresh_env.run("jupyter", "governance", "run", str(path), "--output", str(output), "--db-url", store)
    executed = nbformat.read(output, as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == str(fresh_env.root)
    verify = fresh_env.run("jupyter", "governance", "verify", "--db-url", store, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_binder_post_build_sets_up_the_demo(fresh_env: FreshEnv, repo_root: Path) -> None:
    """What mybinder.org runs after creating the environment: install, check, configure the demo."""
    fresh_env.run("bash", repo_root / "binder" / "postBuild", cwd=repo_root)
    config = json.loads((Path(fresh_env.env["HOME"]) / ".jupyter" / "jupyter_server_config.json").read_text())
    users = config["NamedTokenIdentityProvider"]["users"]
    assert {entry["username"] if isinstance(entry, dict) else entry for entry in users.values()} >= {
        "ana",
        "bob",
    }


def test_the_demo_runs_from_the_wheel_with_a_scratch_notebook(fresh_env: FreshEnv, tmp_path: Path) -> None:
    """Outside the repository (no binder/ folder) the demo serves a copy of the notebook it ships."""
    demo_dir = tmp_path / "demo"
    printed = fresh_env.run(
        "jupyter", "governance", "demo", "--no-launch", "--demo-dir", demo_dir, cwd=tmp_path
    ).stdout
    copy = demo_dir / "notebooks" / "demo.ipynb"
    assert json.loads(copy.read_text())["metadata"]["kernelspec"]["name"] == KERNEL_NAME
    assert f"notebooks: {copy.parent}" in printed
    assert "/lab/workspaces/bob?token=" in printed


def test_jupyterlab_asks_nothing_about_news(fresh_env: FreshEnv) -> None:
    """No news fetched from the internet, no update check, no pop-up over the approval queue."""
    settings = fresh_env.run(
        fresh_env.bin / "python", "-c",
        "from jupyterlab_server.settings_utils import _get_overrides;"
        "from jupyterlab.commands import get_app_dir; import json, os;"
        "print(json.dumps(_get_overrides(os.path.join(get_app_dir(), 'settings'))[0]))",
    ).stdout  # fmt: skip
    notification = json.loads(settings)["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}
