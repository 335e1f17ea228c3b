"""``jupyter governance serve`` as a child process on loopback: for batch runs, tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

STARTUP_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """Start with :meth:`start` (or ``with``); ready once the API answers HTTP on loopback."""

    def __init__(
        self,
        *,
        policy_path: Path,
        db_url: str,
        log_path: Path,
        server_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.api_url = self.url + "governance/api/"
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.argv = [
            sys.executable, "-m", "governed_server.cli", "serve", f"--port={self.port}",
            *(["--allow-root"] if os.geteuid() == 0 else []), "--",
            f"--GovernedServerApp.policy_path={policy_path}", f"--GovernedServerApp.db_url={db_url}",
            *server_args,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServeProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the governance service exited:\n{self.log_tail()}")
            try:
                httpx.get(self.api_url + "health", timeout=2)  # any answer (even 403): it is listening
                return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        seconds = f"{STARTUP_TIMEOUT_S:.0f} s"
        raise RuntimeError(f"the governance service did not start in {seconds}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
