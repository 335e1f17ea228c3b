"""``jupyter governance demo`` as ``make lab`` starts it, in a subprocess with its own Jupyter dirs.

The demo runs from the repository's root (where ``make lab`` runs it) with HOME and the Jupyter
config, data and runtime dirs in a temporary folder; everything it prints is kept, in order.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

STARTUP_TIMEOUT = 120.0
RULE = "=" * 78
URL = re.compile(r"^\s+(http://\S+)$")


@dataclass
class Demo:
    process: subprocess.Popen[str]
    demo_dir: Path
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def urls(self) -> dict[str, str]:
        """Display name ("Ana", "Bob") → the login URL the banner prints under it."""
        found: dict[str, str] = {}
        for previous, line in zip(self.lines, self.lines[1:], strict=False):
            match = URL.match(line)
            if match:
                found[previous.strip().split(" ")[0]] = match.group(1)
        return found

    def token(self, name: str) -> str:
        return self.urls()[name].rsplit("token=", 1)[1]

    @property
    def base_url(self) -> str:
        return self.urls()["Ana"].split("/lab/", 1)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read(process: subprocess.Popen[str], lines: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip("\n"))


@contextmanager
def running_demo(tmp_path: Path, repo_root: Path, *lab_args: str) -> Iterator[Demo]:
    """Start the demo; yield once it has printed its banner; stop it (Ctrl+C) at the end."""
    home = tmp_path / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "PYTHONUNBUFFERED": "1",
    }
    demo_dir = tmp_path / "demo"
    argv = [sys.executable, "-m", "governed_server.cli", "demo", f"--port={free_port()}",
            f"--demo-dir={demo_dir}", *(["--", *lab_args] if lab_args else [])]  # fmt: skip
    process = subprocess.Popen(
        argv, cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    demo = Demo(process, demo_dir, env)
    threading.Thread(target=_read, args=(process, demo.lines), daemon=True).start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while demo.lines.count(RULE) < 2:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the demo did not print its banner:\n{demo.output}")
            time.sleep(0.2)
        yield demo
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
