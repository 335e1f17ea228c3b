"""What the kernel jail costs a kernel's start: governed kernels started by a real jupyter_server with
the bubblewrap jail and without it (``GovernedServerApp.jail = 'none'``, risk accepted), in the same run.

A start is timed as a user sees it: from ``POST /api/kernels`` to the kernel's ``kernel_info_reply``
on its websocket (the kernel is up, governed and answering). Two servers run side by side, one per
setting; rounds alternate which goes first (ABBA), and each round's difference is taken. One command::

    python bench/bench_kernel_start.py [--rounds 12]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import websocket  # websocket-client, a jupyter_server dependency

TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, root: Path, name: str, extra: list[str]) -> None:
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        home = root / name
        (home / "notebooks").mkdir(parents=True)
        dirs = {"CONFIG": "config", "DATA": "data", "RUNTIME": "runtime"}
        env = {
            **os.environ,
            "HOME": str(home),
            **{f"JUPYTER_{k}_DIR": str(home / v) for k, v in dirs.items()},
        }
        argv = [sys.executable, "-m", "jupyter_server", f"--port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={home / 'notebooks'}",
                "--ServerApp.log_level=WARN", *extra]  # fmt: skip
        if os.geteuid() == 0:
            argv.append("--allow-root")
        self.log = (root / f"{name}.log").open("wb")
        self.process = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                self.health = self.get("governance/api/health")
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server {name} did not start (see {root / name}.log)")

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"token {self.token}"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def start_kernel(self) -> tuple[float, str]:
        """Seconds from the start request to the kernel's first ``kernel_info_reply``."""
        started = time.perf_counter()
        kernel_id = self.request("POST", "api/kernels", {"name": "governed-python"})["id"]
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels?token={self.token}",
            timeout=TIMEOUT_S,
        )
        try:
            session = uuid.uuid4().hex
            while True:
                msg_id = uuid.uuid4().hex
                header = {"msg_id": msg_id, "msg_type": "kernel_info_request", "username": "bench",
                          "session": session, "date": "", "version": "5.3"}  # fmt: skip
                ws.send(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": {},
                                    "channel": "shell", "buffers": []}))  # fmt: skip
                ws.settimeout(0.5)
                try:
                    while True:
                        msg = json.loads(ws.recv())
                        if (
                            msg.get("parent_header", {}).get("msg_id") == msg_id
                            and msg["msg_type"] == "kernel_info_reply"
                        ):
                            return time.perf_counter() - started, kernel_id
                except websocket.WebSocketTimeoutException:
                    continue  # not up yet: ask again
        finally:
            ws.close()

    def stop_kernel(self, kernel_id: str) -> None:
        self.request("DELETE", f"api/kernels/{kernel_id}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-start-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        jailed = Server(root, "jailed", [])
        plain = Server(root, "unjailed", ["--GovernedServerApp.jail=none",
                                          "--GovernedServerApp.allow_unjailed_kernels=True"])  # fmt: skip
        try:
            assert jailed.health["jail"] == "bubblewrap", jailed.health["jail"]
            print(f"jail: {jailed.health['jail']} vs {plain.health['jail']}")
            for server in (jailed, plain):  # warm up: bytecode, page cache, first profile creation
                server.stop_kernel(server.start_kernel()[1])
            times: dict[str, list[float]] = {"jailed": [], "unjailed": []}
            diffs: list[float] = []
            for number in range(args.rounds):
                order = [(jailed, "jailed"), (plain, "unjailed")]
                if number % 4 in (1, 2):
                    order.reverse()
                got = {}
                for server, name in order:
                    seconds, kernel_id = server.start_kernel()
                    server.stop_kernel(kernel_id)
                    got[name] = seconds
                    times[name].append(seconds)
                diffs.append(got["jailed"] - got["unjailed"])
            for name, values in times.items():
                ms = [value * 1000 for value in values]
                print(f"{name:9} start to kernel_info_reply: median {statistics.median(ms):.0f} ms "
                      f"(min {min(ms):.0f}, max {max(ms):.0f}), {len(ms)} starts")  # fmt: skip
            cost = [diff * 1000 for diff in diffs]
            print(f"jail cost per start: median {statistics.median(cost):+.0f} ms "
                  f"(per-round differences {min(cost):+.0f} to {max(cost):+.0f} ms)")  # fmt: skip
        finally:
            jailed.stop()
            plain.stop()


if __name__ == "__main__":
    main()
