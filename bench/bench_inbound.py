"""The inbound guard's cost: 200 cheap cells sent over the kernel websocket, as JupyterLab sends them.

Three set-ups, in the same run, each a real jupyter_server with the governance extension:

- ``governed + guard``: ``governed-python`` behind the server's inbound gate (the default);
- ``governed, no guard``: the same with ``GovernedServerApp.guard_websocket = False`` (jupyter_server's
  own connection class: no inbound gate, no outbound masking) — the difference is the guard's cost;
- ``python3``: plain ipykernel behind the server with the guard (the baseline of governed/plain).

Per cell: the time from sending ``execute_request`` to having both its ``execute_reply`` and its
``idle`` (what a frontend waits for). Rounds alternate the order (ABC, CBA, ...); the figures are the
medians over rounds of per-round p50/p99 and of the wall-time ratios. One command::

    python bench/bench_inbound.py [--cells 200] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "service"))
sys.path.insert(0, str(REPO / "bench"))

from bench_kernel import cheap_cells, compile_sources, percentile  # type: ignore[import-not-found]  # noqa: E402
from governance_service import TOKENS, write_test_policy  # type: ignore[import-not-found]  # noqa: E402
from ws_client import V1, KernelSocket  # type: ignore[import-not-found]  # noqa: E402

NAMED_USERS = "governed_server.identity_provider.NamedTokenIdentityProvider"
SETUPS = {
    "governed + guard": ("governed-python", True),
    "governed, no guard": ("governed-python", False),
    "python3": ("python3", True),
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(root: Path, guard: bool) -> tuple[subprocess.Popen[bytes], str]:
    root.mkdir(parents=True, exist_ok=True)
    policy = write_test_policy(root / "policy.yaml")
    port = free_port()
    config = {
        "ServerApp": {"identity_provider_class": NAMED_USERS},
        "NamedTokenIdentityProvider": {"users": {token: name for name, token in TOKENS.items()}},
        "GovernedServerApp": {
            "policy_path": str(policy), "db_url": f"sqlite:///{root / 'store.sqlite'}",
            "checkpoint_dir": str(root / "checkpoints"), "signing_key_path": str(root / "key.pem"),
            "guard_websocket": guard, "allow_ungoverned_kernels": True,
        },
    }  # fmt: skip
    (root / "config.json").write_text(json.dumps(config))
    argv = [sys.executable, "-m", "jupyter_server", f"--config={root / 'config.json'}", f"--port={port}",
            "--ServerApp.ip=127.0.0.1", "--ServerApp.log_level=WARN", f"--ServerApp.root_dir={root}",
            *(["--allow-root"] if os.geteuid() == 0 else [])]  # fmt: skip
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(root / "runtime"), "GOVERNED_POLICY": str(policy)}
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/api/status", timeout=2).close()
            return process, url
        except urllib.error.HTTPError:
            return process, url
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the server did not start: {(root / 'server.log').read_text()}") from None
            time.sleep(0.2)


async def run_cells(url: str, kernel_name: str, cells: list[str]) -> tuple[float, list[float]]:
    import tornado.httpclient
    import tornado.websocket

    headers = {"Authorization": f"token {TOKENS['alice']}", "Content-Type": "application/json"}
    request = urllib.request.Request(
        url + "/api/kernels", method="POST", data=json.dumps({"name": kernel_name}).encode(), headers=headers
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        kernel_id = json.load(response)["id"]
    ws_url = url.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels"
    ws = await tornado.websocket.websocket_connect(
        tornado.httpclient.HTTPRequest(ws_url, headers=headers), subprotocols=[V1]
    )
    ws.stream.set_nodelay(True)  # else Nagle and delayed ACKs add ~40 ms to every small message
    socket = KernelSocket(ws, V1)
    try:
        await socket.ready()
        per_cell: list[float] = []
        started = time.perf_counter()
        for code in cells:
            sent = time.perf_counter()
            await socket.finished(socket.execute(code))
            per_cell.append(time.perf_counter() - sent)
            socket.seen.clear()
        return time.perf_counter() - started, per_cell
    finally:
        ws.close()
        delete = urllib.request.Request(url + f"/api/kernels/{kernel_id}", method="DELETE", headers=headers)
        urllib.request.urlopen(delete, timeout=60).close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    compile_sources()
    cells = cheap_cells(args.cells)
    results: dict[str, list[tuple[float, list[float]]]] = {name: [] for name in SETUPS}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {
            guard: start_server(Path(tmp) / ("guard" if guard else "plain"), guard) for guard in (True, False)
        }
        try:
            order = list(SETUPS)
            for round_number in range(args.repeat):
                for name in order if round_number % 2 == 0 else reversed(order):
                    kernel_name, guard = SETUPS[name]
                    results[name].append(asyncio.run(run_cells(servers[guard][1], kernel_name, cells)))
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=30)
    report(results)


def report(results: dict[str, list[tuple[float, list[float]]]]) -> None:
    def median_of(name: str, q: float) -> float:
        return statistics.median(percentile(per_cell, q) for _, per_cell in results[name]) * 1000

    for name in SETUPS:
        wall = statistics.median(w for w, _ in results[name])
        print(f"{name:20} wall {wall:6.2f} s   per cell p50 {median_of(name, 0.5):6.2f} ms"
              f"   p99 {median_of(name, 0.99):6.2f} ms")  # fmt: skip
    guard_p50 = median_of("governed + guard", 0.5) - median_of("governed, no guard", 0.5)
    guard_p99 = median_of("governed + guard", 0.99) - median_of("governed, no guard", 0.99)
    print(f"inbound guard cost per cell: p50 {guard_p50:+.2f} ms, p99 {guard_p99:+.2f} ms")
    for other in ("governed + guard", "governed, no guard"):
        ratios = [g[0] / p[0] for g, p in zip(results[other], results["python3"], strict=True)]
        print(f"{other} / python3 wall time: {statistics.median(ratios):.2f} "
              f"(rounds {min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
