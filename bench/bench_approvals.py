"""Approval latency: request created → visible in the approver's list, decision → waiting kernel sees it.

Starts ``jupyter governance serve`` (the same API as inside JupyterLab) on SQLite and on a private
PostgreSQL, then for each of N cells: a kernel opens a request while an approver polls the list every
10 ms; the kernel then long-polls ``wait`` while the approver decides. Target: under 1 s each. One
command::

    python bench/bench_approvals.py [--requests 40] [--backends sqlite postgresql]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from pgcluster import PgCluster  # type: ignore[import-not-found]  # noqa: E402

from governed_kernel.resources import policies_dir  # noqa: E402
from governed_server.service.credentials import CredentialIssuer  # noqa: E402
from governed_server.service.store import open_store  # noqa: E402
from governed_server.single_user.serve_process import ServeProcess  # noqa: E402

TOKENS = {"alice": "a" * 48, "bob": "b" * 48}


@contextmanager
def serve(db_url: str, workdir: Path) -> Iterator[str]:
    policy = yaml.safe_load((policies_dir() / "pci-dss.yaml").read_text())
    policy["roles"]["approvers"] = {"users": ["bob"], "groups": []}
    (workdir / "policy.yaml").write_text(yaml.safe_dump(policy))
    config = workdir / "config"
    config.mkdir(exist_ok=True)
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"NamedTokenIdentityProvider": {"users": {t: u for u, t in TOKENS.items()}}})
    )
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_DATA_DIR": str(workdir / "data")}
    server_args = [
        f"--GovernedServerApp.checkpoint_dir={workdir / 'checkpoints'}",
        "--ServerApp.identity_provider_class=governed_server.identity_provider.NamedTokenIdentityProvider",
        "--ServerApp.log_level=WARN",
    ]
    with ServeProcess(
        policy_path=workdir / "policy.yaml", db_url=db_url, log_path=workdir / "serve.log",
        server_args=server_args, env=env,
    ) as server:  # fmt: skip
        yield server.api_url


def measure(url: str, db_url: str, requests: int) -> tuple[list[float], list[float]]:
    store = open_store(db_url)
    token = CredentialIssuer(store).mint("bench-kernel", "alice")
    store.close()
    kernel = httpx.Client(base_url=url, headers={"Authorization": f"GovernedKernel {token}"}, timeout=30)
    approver = httpx.Client(base_url=url, headers={"Authorization": f"token {TOKENS['bob']}"}, timeout=30)
    version = approver.get("health").json()["policy_version"]
    visible: list[float] = []
    delivered: list[float] = []
    for n in range(requests):
        code = f"!ls /data/{n}"
        body = {
            "cell_hash": hashlib.sha256(code.encode()).hexdigest(), "code": code, "policy_version": version,
            "rules": [{"id": "shell-escape", "action": "approve"}],
        }  # fmt: skip
        started = time.perf_counter()
        request_id = kernel.post("kernel/approvals", json=body).json()["id"]
        while request_id not in {
            r["id"] for r in approver.get("approvals", params={"status": "pending"}).json()["requests"]
        }:
            time.sleep(0.01)
        visible.append(time.perf_counter() - started)

        seen: dict[str, float] = {}

        def wait(rid: str = request_id, out: dict[str, float] = seen) -> None:
            status = kernel.get(f"kernel/approvals/{rid}/wait", params={"timeout": 20}).json()["status"]
            out[status] = time.perf_counter()

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.05)  # the kernel is inside its long-poll
        decided_at = time.perf_counter()
        approver.post(f"approvals/{request_id}/decision", json={"decision": "approve", "reason": "bench"})
        waiter.join()
        delivered.append(seen["approved"] - decided_at)
    return visible, delivered


def pending_ids(approver: httpx.Client) -> set[str]:
    return {r["id"] for r in approver.get("approvals", params={"status": "pending"}).json()["requests"]}


def describe(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    p50, worst = statistics.median(values), max(values)
    return f"p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   max {worst * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    print(f"approval latency over {args.requests} requests (target: under 1 s each)")
    with tempfile.TemporaryDirectory() as tmp:
        cluster = PgCluster().start() if "postgresql" in args.backends else None
        try:
            for backend in args.backends:
                workdir = Path(tmp) / backend
                workdir.mkdir()
                if backend == "sqlite" or cluster is None:
                    db_url = f"sqlite:///{workdir / 'governance.sqlite'}"
                else:
                    db_url = cluster.create_database()
                with serve(db_url, workdir) as url:
                    visible, delivered = measure(url, db_url, args.requests)
                print(f"{backend:<11} created → in approver's list   {describe(visible)}")
                print(f"{backend:<11} decided → kernel's wait returns {describe(delivered)}")
        finally:
            if cluster is not None:
                cluster.stop()


if __name__ == "__main__":
    main()
