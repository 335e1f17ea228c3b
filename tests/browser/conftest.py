"""A real JupyterLab server in a subprocess and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("GOVERNED_TEST_CHROMIUM", "/usr/bin/chromium")
# Flags for a root user on a machine with no network but the package registries.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_TIMEOUT = 90.0


@pytest.fixture(autouse=True)
def jp_asyncio_loop() -> Iterator[None]:
    """No pytest-jupyter event loop here: Playwright's sync API runs its own."""
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup() -> Iterator[None]:
    """Nothing to clean: these tests run JupyterLab in a subprocess, not in-process."""
    yield None


@dataclass
class LabServer:
    url: str
    token: str
    root_dir: Path
    log_file: Path

    def lab_url(self, path: str = "lab") -> str:
        return f"{self.url}/{path}?token={self.token}"

    def get_json(self, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}/{path}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _run_lab(tmp_path: Path, server_config: dict[str, Any]) -> Iterator[LabServer]:
    home = tmp_path / "home"
    config_dir, data_dir, root_dir = home / "config", home / "data", tmp_path / "notebooks"
    for path in (config_dir, data_dir, root_dir):
        path.mkdir(parents=True)
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(server_config))
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "JUPYTER_DATA_DIR": str(data_dir),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
    }
    log_file = tmp_path / "jupyterlab.log"
    with log_file.open("w") as log:
        argv = [
            sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
            f"--LabApp.workspaces_dir={home / 'workspaces'}",
            f"--LabApp.user_settings_dir={home / 'settings'}",
        ]  # fmt: skip
        if os.geteuid() == 0:
            argv.append("--allow-root")
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = LabServer(f"http://127.0.0.1:{port}", token, root_dir, log_file)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {process.returncode}:\n{log_file.read_text()}")
            try:
                server.get_json("api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start in {STARTUP_TIMEOUT}s:\n{log_file.read_text()}")
                time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def _lab_factory(root: Path) -> Iterator[Callable[..., LabServer]]:
    """``start(config)`` runs JupyterLab from the installed package; all stop when the block ends."""
    with ExitStack() as stack:
        numbers = itertools.count()

        def start(server_config: dict[str, Any] | None = None) -> LabServer:
            return stack.enter_context(_run_lab(root / f"lab{next(numbers)}", server_config or {}))

        yield start


@pytest.fixture
def start_lab(tmp_path: Path) -> Iterator[Callable[..., LabServer]]:
    """Factory: servers live until the test ends."""
    with _lab_factory(tmp_path) as start:
        yield start


@pytest.fixture(scope="module")
def module_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LabServer]]:
    """Factory like ``start_lab`` whose servers live for the whole module (shared by its tests)."""
    with _lab_factory(tmp_path_factory.mktemp("module-lab")) as start:
        yield start


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module: Playwright's sync API holds an event loop while it runs, which
    must be gone before pytest-jupyter's tests set up their own."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's 'chromium' package (see .ci/run).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    yield page
    context.close()
