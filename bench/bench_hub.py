"""JupyterHub profile under load (issue 16): many Hub users' governed kernels at once, gated cells
approved by two approvers through the service's API, every cell checked in the audit log.

One command (as root: real OS users, a real Hub; ``bash .ci/hub-python.sh`` first)::

    python bench/bench_hub.py [--users 10] [--kernels 20] [--cells 200] [--gated-percent 10] [--think 0.1]

What runs (``tests/hubstack.py``, the deployment of docs/deploy-jupyterhub.md): JupyterHub as root,
configurable-http-proxy, LocalProcessSpawner, the governance service as its own OS user
(``gkb-gov``) on a durable (fsync on), password-protected PostgreSQL; ``--users`` analysts
(``gkb-a01``...: group ``card-data-analysts``), two approvers (``gkb-appr1``, ``gkb-appr2``:
``card-data-approvers``) and an auditor (``gkb-aud``: ``compliance``). The bench's users, ports and
folders are its own (``gkb-``), so it can run beside ``tests/hub`` (``gkh-``).

Load: ``--kernels`` governed kernels (``governed-python``, round robin over the analysts' single-user
servers), each driven through its server's kernel websocket *through the Hub's proxy* (the guarded
path: the server's inbound guard records every request and holds gated cells) by a client that sends
one cell, reads until its ``execute_reply`` and ``idle``, waits ``--think`` seconds (0.1) and sends the
next. Each kernel runs ``--cells`` cells: cheap cells (assignments, expressions, prints, a small list
comprehension, a dict) and ``--gated-percent`` gated cells (``subprocess.run(['true'])``, which the
policy's ``processes-and-native-code`` rule sends to an approver; each one's text is unique, so no
approval is reused). The two approver clients each hold the service's push stream
(``/governance/api/events``, as the side panel's relay does) and, on every ``requested`` event, and
every ``--poll`` seconds as well, read the queue (``GET approvals?status=pending``); each approves
the requests that fall to it (half each, by request id) with ``POST approvals/{id}/decision``.

Baseline, same run, same machine load: a plain ``jupyter server`` (governed_server disabled: no
guard, no service) as its own OS user (``gkb-plain``) behind its own configurable-http-proxy (the
same hops as a Hub user's server, without the Hub's auth and without governance), with as many plain
``python3`` kernels (ipykernel of the same Python environment), driven over its kernel websockets by
the same client code with the same notebooks (the gated cells simply run there). Each governed
kernel is paired with a plain one and the pair runs in lockstep: cell *n* is sent to both at the same
moment, cell *n+1* when both finished (and ``--think`` passed), so both sides see the same load.

Why the think time: jupyter_server's kernel websocket leaves Nagle's algorithm on, so when a cell's
messages follow the previous cell's at once, the second small frame (``execute_input`` after
``busy``) waits for the proxy's delayed ACK, ~40 ms, on both paths alike. In lockstep only the side
that finished last sends back to back, so with ``--think 0`` the slower (governed) side alone pays
those 40 ms per cell; a pause of 0.1 s lets each cell start on an idle connection on both sides.

Measured:

- **integrity alerts**: ``integrity.*`` records about the kernels (none is due: every cell passed
  the guard and was recorded by its kernel), read once the witnesses' grace period has passed.
- **cells lost**: for every cell sent to a governed kernel, the audit log (auditor's
  ``GET audit?kernel_id=``) must hold its ``cell.start`` and ``cell.end`` (matched by the request's
  ``msg_id``); the server's ``request.execute`` is checked too. Must be 0; then ``GET audit/verify``.
- **per-cell time** (client: send → ``execute_reply`` and ``idle``) p50/p99 of the ungated cells,
  governed vs plain; the overhead is their difference at each percentile.
- **request → visible in the queue**: from the client's send of the gated cell (and, for diagnosis,
  from the request's ``created_at``) to the first list read of each approver client that shows it.
- **decision → kernel running**: from the approver's decision call returning to the first output of
  the cell (its first line prints with ``flush=True``); decision → ``execute_input`` too.
- **records/s**: the store's chain head (``audit_head.seq``, read every second with the cluster's
  superuser) over the load phase, average and best 5 s.
- **service peak RSS**: ``VmHWM`` of the service process (``pgrep -u gkb-gov``), sampled every second;
  its CPU time over the load phase.

Targets (issue 16): 0 cells lost, verify valid, request → visible and decision → running < 1 s p99.
Exit status 1 when a cell was lost or failed, verify failed, or an integrity alert was raised.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from hubstack import HubStack, ensure_user, free_port, hub_python  # type: ignore[import-not-found]  # noqa: E402
from pgcluster import PgCluster  # type: ignore[import-not-found]  # noqa: E402
from ws_client import V1, KernelSocket  # type: ignore[import-not-found]  # noqa: E402

PREFIX = "gkb-"
SERVICE_USER = f"{PREFIX}gov"
PLAIN_USER = f"{PREFIX}plain"
APPROVERS = ("appr1", "appr2")
CELL_TIMEOUT_S = 180
TARGET_S = 1.0
WITNESS_GRACE_S = 5.0
"""The service's ``witness_grace_seconds`` here (30 by default), so that the check below need not
wait long for an alert that would be due."""

CHEAP = [
    "x{b} = {b} * 2",
    "x{b}",
    "print('row', {b}, x{b})",
    "values = [v * v for v in range(50)]\nsum(values) + {b}",
    "d{b} = {{'id': {b}, 'amount': {b} * 1.5}}\nd{b}",
]
GATED = "print('gated {tag}', flush=True)\nimport subprocess\nsubprocess.run(['true'], check=True)"
TAG = re.compile(r"gated (k[a-j]+c[a-j]+)")
"""The marker is letters only: the kernel's stream masking holds back a trailing run of digits (it
could still grow into a card number) until the cell ends, which would delay the first output."""


# -- the notebooks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    index: int
    code: str
    tag: str = ""
    """Gated cells only: ``k<kernel>c<index>``, printed first, unique over the run."""


def letters(number: int, width: int) -> str:
    return "".join("abcdefghij"[int(d)] for d in f"{number:0{width}d}")


def notebook(kernel: int, count: int, gated_percent: float) -> list[Cell]:
    """``count`` cells, ``gated_percent`` of them gated, spread evenly (every 10th at 10 %)."""
    cells: list[Cell] = []
    cheap = 0
    for index in range(count):
        if int((index + 1) * gated_percent / 100) > int(index * gated_percent / 100):
            tag = f"k{letters(kernel, 2)}c{letters(index, 4)}"
            cells.append(Cell(index, GATED.format(tag=tag), tag))
        else:
            cells.append(Cell(index, CHEAP[cheap % len(CHEAP)].format(b=cheap // len(CHEAP))))
            cheap += 1
    return cells


# -- one cell over a kernel websocket --------------------------------------------------------------


@dataclass
class CellRun:
    side: str
    kernel: int
    cell: Cell
    msg_id: str = ""
    sent: float = 0.0
    input_at: float | None = None
    output_at: float | None = None
    reply_at: float | None = None
    idle_at: float | None = None
    status: str = ""
    """The reply's status, or ``timeout`` / ``closed``."""

    @property
    def seconds(self) -> float | None:
        if self.reply_at is None or self.idle_at is None:
            return None
        return max(self.reply_at, self.idle_at) - self.sent


async def run_cell(socket: KernelSocket, run: CellRun) -> None:
    marker = f"gated {run.cell.tag}" if run.cell.tag else ""
    run.sent = time.time()
    run.msg_id = socket.execute(run.cell.code)

    def done(msg: dict[str, Any]) -> bool:
        if msg.get("parent_header", {}).get("msg_id") != run.msg_id:
            return False
        now = time.time()
        kind = msg["msg_type"]
        if kind == "execute_input" and run.input_at is None:
            run.input_at = now
        elif (
            kind == "stream" and marker and run.output_at is None and marker in msg["content"].get("text", "")
        ):
            run.output_at = now
        elif kind == "execute_reply" and msg["channel"] == "shell":
            run.reply_at = now
            run.status = str(msg["content"].get("status", ""))
        elif kind == "status" and msg["content"].get("execution_state") == "idle":
            run.idle_at = now
        return run.reply_at is not None and run.idle_at is not None

    try:
        await socket.until(done, timeout=CELL_TIMEOUT_S)
    except asyncio.TimeoutError:
        run.status = "timeout"
    except AssertionError:  # KernelSocket.read: the websocket closed
        run.status = "closed"
    finally:
        socket.seen.clear()  # every message was handed to ``done``; keep the client's memory flat


# -- the approvers ---------------------------------------------------------------------------------


@dataclass
class Request:
    id: str
    tag: str
    kernel_id: str
    created_at: float
    seen: dict[str, float] = field(default_factory=dict)
    """Approver → when its list read first showed the request."""
    pushed: dict[str, float] = field(default_factory=dict)
    """Approver → when its push stream announced the request."""
    decided_at: float | None = None
    decided_by: str = ""
    decision_status: int = 0


@dataclass
class Book:
    requests: dict[str, Request] = field(default_factory=dict)
    by_tag: dict[str, Request] = field(default_factory=dict)
    pushed_early: dict[tuple[str, str], float] = field(default_factory=dict)
    """(approver, request id) announced before any list read showed it."""
    list_reads: int = 0
    list_seconds: list[float] = field(default_factory=list)
    decision_seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def owner_of(request_id: str) -> int:
    return int(hashlib.sha1(request_id.encode()).hexdigest(), 16) % len(APPROVERS)


class Approver:
    """An approver's client: push stream + queue reads + decisions on their half of the requests."""

    def __init__(self, index: int, stack: HubStack, book: Book, poll: float) -> None:
        self.index = index
        self.name = APPROVERS[index]
        self.stack = stack
        self.book = book
        self.poll = poll
        self.token = stack.token(self.name)
        self.http = httpx.AsyncClient(
            base_url=stack.service_api, headers={"Authorization": f"token {self.token}"}, timeout=60
        )
        self.kick = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.deciding: set[str] = set()
        self.events = 0
        self.ws: Any = None

    async def start(self) -> None:
        url = self.stack.service_api.replace("http://", "ws://") + "events"
        self.ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {self.token}"}))
        self.tasks = [asyncio.create_task(self.listen()), asyncio.create_task(self.refresher())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with suppress(asyncio.CancelledError):
                await task
        if self.ws is not None:
            self.ws.close()
        await self.http.aclose()

    async def listen(self) -> None:
        while True:
            raw = await self.ws.read_message()
            if raw is None:
                self.book.errors.append(f"{self.name}: the event stream closed")
                return
            now = time.time()
            self.events += 1
            event = json.loads(raw)
            if "approval" not in event.get("schema_id", ""):
                continue
            data = event.get("data", {})
            if data.get("action") == "requested":
                request = self.book.requests.get(str(data.get("request_id")))
                if request is not None:
                    request.pushed.setdefault(self.name, now)
                else:
                    self.book.pushed_early.setdefault((self.name, str(data.get("request_id"))), now)
                self.kick.set()

    async def refresher(self) -> None:
        while True:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.kick.wait(), timeout=self.poll)
            self.kick.clear()
            try:
                await self.refresh()
            except (httpx.HTTPError, ValueError, KeyError) as error:
                self.book.errors.append(f"{self.name}: reading the queue: {error!r}")
                await asyncio.sleep(0.5)

    async def refresh(self) -> None:
        started = time.time()
        response = await self.http.get("approvals", params={"status": "pending", "limit": 1000})
        now = time.time()
        self.book.list_reads += 1
        self.book.list_seconds.append(now - started)
        response.raise_for_status()
        for view in response.json()["requests"]:
            request = self.book.requests.get(view["id"])
            if request is None:
                found = TAG.search(view.get("code", ""))
                if found is None:
                    continue
                request = Request(
                    view["id"], found.group(1), view["kernel_id"], parse_time(view["created_at"])
                )
                self.book.requests[request.id] = request
                self.book.by_tag[request.tag] = request
                pushed = self.book.pushed_early.pop((self.name, request.id), None)
                other = APPROVERS[1 - self.index]
                pushed_other = self.book.pushed_early.pop((other, request.id), None)
                if pushed is not None:
                    request.pushed[self.name] = pushed
                if pushed_other is not None:
                    request.pushed[other] = pushed_other
            request.seen.setdefault(self.name, now)
            if owner_of(request.id) == self.index and request.id not in self.deciding:
                self.deciding.add(request.id)
                self.tasks.append(asyncio.create_task(self.decide(request)))

    async def decide(self, request: Request) -> None:
        started = time.time()
        body = {"decision": "approve", "reason": "bench: reviewed"}
        try:
            response = await self.http.post(f"approvals/{request.id}/decision", json=body)
        except httpx.HTTPError as error:
            self.book.errors.append(f"{self.name}: deciding {request.id}: {error!r}")
            return
        request.decided_at = time.time()
        request.decided_by = self.name
        request.decision_status = response.status_code
        self.book.decision_seconds.append(request.decided_at - started)
        if response.status_code != 200:
            self.book.errors.append(
                f"{self.name}: {request.id}: {response.status_code} {response.text[:200]}"
            )


# -- the machine: service process, store head -------------------------------------------------------


def pids_of(user: str, pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-u", user, "-f", pattern], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split()]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB (empty when it is gone)."""
    values: dict[str, int] = {}
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    with suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def process_table() -> dict[int, tuple[str, str, int, float]]:
    """Every process: pid → (user, command line, parent pid, CPU seconds so far)."""
    import pwd

    table: dict[int, tuple[str, str, int, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, IndexError, ValueError, KeyError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            uid = entry.stat().st_uid
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            table[int(entry.name)] = (
                pwd.getpwuid(uid).pw_name,
                command,
                int(fields[1]),
                (int(fields[11]) + int(fields[12])) / tick,
            )
    return table


@dataclass
class CpuGroups:
    """CPU seconds per part of the deployment between two snapshots of the process table."""

    hub_pid: int
    plain_proxy_pid: int
    postmaster_pid: int
    before: dict[int, tuple[str, str, int, float]] = field(default_factory=dict)

    def group(self, pid: int, user: str, command: str, ppid: int) -> str | None:
        if user == SERVICE_USER:
            return "service"
        if user.startswith(f"{PREFIX}a") and user[len(PREFIX) + 1 :].isdigit():
            return "single-user servers" if "jupyterhub-singleuser" in command else "governed kernels"
        if user == PLAIN_USER:
            return "plain server" if "jupyter_server" in command else "plain kernels"
        if self.postmaster_pid in (pid, ppid):
            return "PostgreSQL"
        if pid == self.hub_pid:
            return "Hub"
        if ppid == self.hub_pid:
            return "Hub's proxy"
        if pid == self.plain_proxy_pid:
            return "plain proxy"
        if pid == os.getpid():
            return "bench client"
        return None

    def start(self) -> None:
        self.before = process_table()

    def since(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, (user, command, ppid, cpu) in process_table().items():
            name = self.group(pid, user, command, ppid)
            if name is None:
                continue
            earlier = self.before.get(pid)
            spent = cpu - earlier[3] if earlier is not None and earlier[1] == command else cpu
            totals[name] = totals.get(name, 0.0) + spent
        return {name: round(value, 1) for name, value in sorted(totals.items(), key=lambda kv: -kv[1])}


@dataclass
class Sampler:
    cluster: PgCluster
    samples: list[tuple[float, int, int, float]] = field(default_factory=list)
    """(time, store head seq, service VmRSS KiB, 1-min load average)."""
    service_pids: set[int] = field(default_factory=set)
    hwm_kib: int = 0
    connection: Any = None

    def connect(self) -> None:
        import psycopg

        self.connection = psycopg.connect(
            host="127.0.0.1", port=self.cluster.port, user="postgres", password=self.cluster.password,
            dbname="governance", autocommit=True,
        )  # fmt: skip

    def head(self) -> int:
        row = self.connection.execute("SELECT seq FROM audit_head WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def sample(self) -> tuple[float, int, int, float]:
        pids = pids_of(SERVICE_USER, "serve --hub")
        rss = 0
        for pid in pids:
            self.service_pids.add(pid)
            status = proc_status(pid)
            rss += status.get("VmRSS", 0)
            self.hwm_kib = max(self.hwm_kib, status.get("VmHWM", 0))
        row = (time.time(), self.head(), rss, os.getloadavg()[0])
        self.samples.append(row)
        return row

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(1.0)


# -- the stack -------------------------------------------------------------------------------------


def bench_people(users: int) -> tuple[dict[str, str], dict[str, list[str]]]:
    analysts = {f"a{n:02d}": f"{PREFIX}a{n:02d}" for n in range(1, users + 1)}
    people = {**analysts, **{name: f"{PREFIX}{name}" for name in APPROVERS}, "aud": f"{PREFIX}aud"}
    groups = {
        "card-data-analysts": sorted(analysts.values()),
        "card-data-approvers": [people[name] for name in APPROVERS],
        "compliance": [people["aud"]],
    }
    return people, groups


@dataclass
class PlainServer:
    """A plain jupyter_server (governed_server disabled) as ``gkb-plain``, behind its own
    configurable-http-proxy (the Hub's hops without the Hub and without governance)."""

    root: Path
    port: int = field(default_factory=free_port)
    proxy_port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(24))
    process: subprocess.Popen[bytes] | None = None
    proxy: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Through the proxy, as the kernels' clients reach it."""
        return f"http://127.0.0.1:{self.proxy_port}/"

    def start(self) -> PlainServer:
        home = Path(ensure_user(PLAIN_USER).pw_dir)
        log = (self.root / "plain-server.log").open("wb")
        self.process = subprocess.Popen(
            [
                "runuser", "-u", PLAIN_USER, "--", str(hub_python()), "-m", "jupyter_server",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.open_browser=False",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={home}",
                '--ServerApp.jpserver_extensions={"governed_server": False}', "--ServerApp.log_level=WARN",
            ],
            cwd=home, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        proxy_log = (self.root / "plain-proxy.log").open("wb")
        self.proxy = subprocess.Popen(
            [
                "configurable-http-proxy", "--ip", "127.0.0.1", "--port", str(self.proxy_port),
                "--api-ip", "127.0.0.1", "--api-port", str(free_port()),
                "--default-target", f"http://127.0.0.1:{self.port}", "--log-level", "warn",
            ],
            env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16)},
            stdout=proxy_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        headers = {"Authorization": f"token {self.token}"}
        while time.monotonic() < deadline:
            with suppress(httpx.HTTPError):
                if httpx.get(self.url + "api/kernelspecs", headers=headers, timeout=2).status_code == 200:
                    governed = httpx.get(self.url + "governance/api/health", headers=headers, timeout=5)
                    if governed.status_code != 404:
                        raise RuntimeError("the baseline server has governed_server enabled")
                    return self
            time.sleep(0.5)
        tail = (self.root / "plain-server.log").read_text()[-2000:]
        raise RuntimeError(f"the plain jupyter server did not start: {tail}")

    def stop(self) -> None:
        for process in (self.proxy, self.process):
            if process is not None and process.poll() is None:
                process.terminate()
                with suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=20)
        subprocess.run(["pkill", "-u", PLAIN_USER], check=False)


@dataclass
class Kernel:
    side: str
    index: int
    owner: str
    kernel_id: str
    socket: KernelSocket


async def open_kernel(side: str, index: int, owner: str, base: str, token: str, name: str) -> Kernel:
    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
        response = await client.post("api/kernels", json={"name": name})
        if response.status_code != 201:
            raise RuntimeError(
                f"{side} kernel {index} of {owner}: {response.status_code} {response.text[:300]}"
            )
        kernel_id = response.json()["id"]
    url = base.replace("http://", "ws://") + f"api/kernels/{kernel_id}/channels"
    ws = await websocket_connect(HTTPRequest(url, headers=headers, request_timeout=120), subprotocols=[V1])
    ws.stream.set_nodelay(True)  # as browsers do; else Nagle and delayed ACKs add ~40 ms per cell
    socket = KernelSocket(ws, V1)
    socket.kernel_id = kernel_id
    await asyncio.wait_for(socket.ready(), timeout=120)
    socket.seen.clear()
    return Kernel(side, index, owner, kernel_id, socket)


# -- figures ---------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread(values: list[float]) -> dict[str, float | int]:
    """p50 / p99 / max in milliseconds."""
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.5) * 1000, 1),
        "p99_ms": round(percentile(values, 0.99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1) if values else float("nan"),
    }


def show(values: dict[str, float | int]) -> str:
    p50, p99, worst, n = values["p50_ms"], values["p99_ms"], values["max_ms"], values["n"]
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms (n={n})"


async def audit_records(auditor: httpx.AsyncClient, kernel_id: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    after = 0
    while True:
        response = await auditor.get(
            "audit", params={"kernel_id": kernel_id, "limit": 1000, "after_seq": after}
        )
        response.raise_for_status()
        page = response.json()["records"]
        records.extend(page)
        if len(page) < 1000:
            return records
        after = max(int(r["seq"]) for r in page)


KINDS = ("cell.start", "cell.end", "request.execute")


def masked_form_of(shown: str, msg_id: str) -> bool:
    """Whether ``shown`` is ``msg_id`` with some characters masked (``*``)."""
    if "*" not in shown or len(shown) != len(msg_id):
        return False
    return all(a in ("*", b) for a, b in zip(shown, msg_id, strict=True))


def lost_cells(
    runs: list[CellRun], records: list[dict[str, Any]]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per record type, the msg_ids of sent cells without such a record, and of those whose record
    holds the msg_id masked (a run of its hex digits taken for a card number) rather than as sent."""
    kinds: dict[str, set[str]] = {}
    masked: list[tuple[str, str]] = []
    for record in records:
        details = (record.get("data") or {}).get("details") or {}
        msg_id = str(details.get("msg_id") or "")
        if msg_id:
            kinds.setdefault(msg_id, set()).add(record["event_type"])
            if "*" in msg_id:
                masked.append((msg_id, record["event_type"]))
    missing: dict[str, list[str]] = {kind: [] for kind in KINDS}
    via_mask: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for run in runs:
        have = kinds.get(run.msg_id, set())
        for kind in KINDS:
            if kind in have:
                continue
            if any(event == kind and masked_form_of(shown, run.msg_id) for shown, event in masked):
                via_mask[kind].append(run.msg_id)
            else:
                missing[kind].append(run.msg_id)
    return missing, via_mask


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Progress:
    total: int
    done: dict[str, int] = field(default_factory=lambda: {"governed": 0, "plain": 0})
    per_kernel: dict[int, int] = field(default_factory=dict)


async def run_pair(
    governed: Kernel, plain: Kernel, cells: list[Cell], progress: Progress, out: list[CellRun], think: float
) -> None:
    for cell in cells:
        await asyncio.sleep(think)
        ours = CellRun("governed", governed.index, cell)
        theirs = CellRun("plain", plain.index, cell)
        await asyncio.gather(run_cell(governed.socket, ours), run_cell(plain.socket, theirs))
        out.extend((ours, theirs))
        progress.done["governed"] += 1
        progress.done["plain"] += 1
        progress.per_kernel[governed.index] = cell.index + 1
        if ours.status == "closed":
            return


async def report_progress(progress: Progress, book: Book, sampler: Sampler, started: float) -> None:
    while True:
        await asyncio.sleep(10)
        counts = list(progress.per_kernel.values()) or [0]
        approved = sum(1 for r in book.requests.values() if r.decided_at is not None)
        head = sampler.samples[-1] if sampler.samples else (0.0, 0, 0, 0.0)
        print(
            f"  [{time.time() - started:6.0f} s] cells governed {progress.done['governed']}/{progress.total}"
            f" plain {progress.done['plain']}/{progress.total} (per kernel {min(counts)}-{max(counts)})"
            f"  approved {approved}/{len(book.requests)}  records {head[1]}"
            f"  service RSS {head[2] / 1024:.0f} MB  load {head[3]:.1f}",
            flush=True,
        )


async def load(
    args: argparse.Namespace, stack: HubStack, plain: PlainServer, cluster: PgCluster
) -> dict[str, Any]:
    analysts = [name for name in stack.people if name.startswith("a") and name[1:].isdigit()]
    book = Book()
    sampler = Sampler(cluster)
    sampler.connect()
    t0 = time.time()
    print(
        f"opening {args.kernels} governed kernels in {len(analysts)} users' servers"
        f" and {args.kernels} plain ones ...",
        flush=True,
    )
    gate = asyncio.Semaphore(args.start_concurrency)

    async def opened(side: str, index: int) -> Kernel:
        async with gate:
            if side == "governed":
                who = analysts[index % len(analysts)]
                return await open_kernel(
                    side, index, who, stack.user_url(who), stack.token(who), "governed-python"
                )
            return await open_kernel(side, index, PLAIN_USER, plain.url, plain.token, "python3")

    kernels = await asyncio.gather(
        *(opened(side, n) for n in range(args.kernels) for side in ("governed", "plain"))
    )
    governed = [k for k in kernels if k.side == "governed"]
    plains = [k for k in kernels if k.side == "plain"]
    kernels_s = time.time() - t0
    print(f"  {len(kernels)} kernels up in {kernels_s:.1f} s", flush=True)

    approvers = [Approver(n, stack, book, args.poll) for n in range(len(APPROVERS))]
    for approver in approvers:
        await approver.start()
    await asyncio.sleep(1.0)  # the push streams are subscribed
    runs: list[CellRun] = []
    progress = Progress(total=args.kernels * args.cells)
    await asyncio.to_thread(sampler.sample)
    service_pids = pids_of(SERVICE_USER, "serve --hub")
    cpu_before = sum(cpu_seconds(pid) for pid in service_pids)
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    assert stack.process is not None and plain.proxy is not None
    groups = CpuGroups(stack.process.pid, plain.proxy.pid, postmaster)
    groups.start()
    head_before = sampler.head()
    started = time.time()
    print(f"running {args.cells} cells on each kernel pair ({args.gated_percent:g} % gated) ...", flush=True)
    background = [
        asyncio.create_task(sampler.run()),
        asyncio.create_task(report_progress(progress, book, sampler, started)),
    ]
    try:
        await asyncio.gather(
            *(
                run_pair(g, p, notebook(g.index, args.cells, args.gated_percent), progress, runs, args.think)
                for g, p in zip(governed, plains, strict=True)
            )
        )
    finally:
        for task in background:
            task.cancel()
        for approver in approvers:
            await approver.stop()
    finished = time.time()
    await asyncio.to_thread(sampler.sample)
    head_after = sampler.head()
    cpu_after = sum(cpu_seconds(pid) for pid in pids_of(SERVICE_USER, "serve --hub"))
    cpu_groups = groups.since()
    load_s = finished - started
    print(f"  load phase {load_s:.1f} s; checking the audit log ...", flush=True)
    # A false integrity alert (a kernel record taken for one of a request never forwarded) would
    # only be written once the witnesses' grace period passed: wait for it before reading.
    await asyncio.sleep(WITNESS_GRACE_S + 6)  # and the service sweeps every 5 s

    # -- the audit log --------------------------------------------------------------------------
    auditor = httpx.AsyncClient(
        base_url=stack.service_api, headers={"Authorization": f"token {stack.token('aud')}"}, timeout=600
    )
    missing_all: dict[str, int] = dict.fromkeys(KINDS, 0)
    masked_all: dict[str, int] = dict.fromkeys(KINDS, 0)
    examples: list[str] = []
    masked_examples: list[str] = []
    record_count = 0
    by_type: dict[str, int] = {}
    stored_start: dict[str, float] = {}
    """msg_id → when the service stored the cell's start record (its clock: the same machine's)."""
    try:
        for kernel in governed:
            records = await audit_records(auditor, kernel.kernel_id)
            record_count += len(records)
            for record in records:
                by_type[record["event_type"]] = by_type.get(record["event_type"], 0) + 1
                if record["event_type"] == "cell.start":
                    msg_id = str(((record.get("data") or {}).get("details") or {}).get("msg_id") or "")
                    stored_start[msg_id] = datetime.fromisoformat(
                        record["time"].replace("Z", "+00:00")
                    ).timestamp()
            mine = [r for r in runs if r.side == "governed" and r.kernel == kernel.index]
            missing, via_mask = lost_cells(mine, records)
            for kind in KINDS:
                missing_all[kind] += len(missing[kind])
                masked_all[kind] += len(via_mask[kind])
                examples.extend(f"{kernel.kernel_id} {kind} {msg_id}" for msg_id in missing[kind][:3])
                masked_examples.extend(f"{kernel.kernel_id} {kind} {msg_id}" for msg_id in via_mask[kind][:3])
        verify_started = time.time()
        verify = (await auditor.get("audit/verify")).json()
        verify_s = time.time() - verify_started
    finally:
        await auditor.aclose()
    for kernel in kernels:
        kernel.socket.ws.close()
    alerts = sum(count for kind, count in by_type.items() if kind.startswith("integrity."))

    # -- figures ---------------------------------------------------------------------------------
    gov_runs = [r for r in runs if r.side == "governed"]
    plain_runs = [r for r in runs if r.side == "plain"]
    failed = {
        side: [r for r in rs if r.status != "ok"]
        for side, rs in (("governed", gov_runs), ("plain", plain_runs))
    }
    ungated = {
        side: [r.seconds for r in rs if not r.cell.tag and r.seconds is not None]
        for side, rs in (("governed", gov_runs), ("plain", plain_runs))
    }
    gated_runs = [r for r in gov_runs if r.cell.tag]
    plain_gated = [r.seconds for r in plain_runs if r.cell.tag and r.seconds is not None]
    sent_by_tag = {r.cell.tag: r for r in gated_runs}
    sent_visible: list[float] = []
    created_visible: list[float] = []
    pushed: list[float] = []
    decision_running: list[float] = []
    decision_input: list[float] = []
    sent_created: list[float] = []
    input_output: list[float] = []
    input_start: list[float] = []
    start_output: list[float] = []
    for request in book.requests.values():
        cell = sent_by_tag.get(request.tag)
        for when in request.seen.values():
            created_visible.append(when - request.created_at)
            if cell is not None:
                sent_visible.append(when - cell.sent)
        if cell is not None:
            sent_created.append(request.created_at - cell.sent)
            if cell.input_at is not None and cell.output_at is not None:
                input_output.append(cell.output_at - cell.input_at)
                start = stored_start.get(cell.msg_id)
                if start is not None:
                    input_start.append(start - cell.input_at)
                    start_output.append(cell.output_at - start)
        for when in request.pushed.values():
            if cell is not None:
                pushed.append(when - cell.sent)
        if cell is not None and request.decided_at is not None:
            if cell.output_at is not None:
                decision_running.append(cell.output_at - request.decided_at)
            if cell.input_at is not None:
                decision_input.append(cell.input_at - request.decided_at)
    unmatched = [r.cell.tag for r in gated_runs if r.cell.tag not in book.by_tag]
    samples = sampler.samples
    window = [s for s in samples if started <= s[0] <= finished] or samples
    best5 = 0.0
    for i, first in enumerate(window):
        for last in window[i + 1 :]:
            if last[0] - first[0] >= 5:
                best5 = max(best5, (last[1] - first[1]) / (last[0] - first[0]))
                break
    p50 = {side: percentile(v, 0.5) for side, v in ungated.items()}
    p99 = {side: percentile(v, 0.99) for side, v in ungated.items()}
    visible = spread(sent_visible)
    running = spread(decision_running)
    lost = missing_all["cell.start"] + missing_all["cell.end"]
    summary: dict[str, Any] = {
        "users": len(analysts),
        "governed_kernels": len(governed),
        "plain_kernels": len(plains),
        "cells_per_kernel": args.cells,
        "gated_percent": args.gated_percent,
        "cells_sent": {"governed": len(gov_runs), "plain": len(plain_runs)},
        "cells_failed": {side: len(v) for side, v in failed.items()},
        "failed_examples": [
            f"{r.side} k{r.kernel} c{r.cell.index}: {r.status}" for v in failed.values() for r in v[:5]
        ],
        "cells_missing_records": missing_all,
        "cells_lost": lost,
        "missing_examples": examples[:10],
        "cells_with_masked_msg_id": masked_all,
        "masked_msg_id_examples": masked_examples[:10],
        "verify": verify,
        "verify_seconds": round(verify_s, 2),
        "audit_records_of_the_kernels": record_count,
        "records_by_type": dict(sorted(by_type.items(), key=lambda item: -item[1])),
        "integrity_alerts": alerts,
        "cell_ms": {side: spread(v) for side, v in ungated.items()},
        "overhead_ms": {
            "p50": round((p50["governed"] - p50["plain"]) * 1000, 1),
            "p99": round((p99["governed"] - p99["plain"]) * 1000, 1),
        },
        "ratio": {
            "p50": round(p50["governed"] / p50["plain"], 2) if p50["plain"] else None,
            "p99": round(p99["governed"] / p99["plain"], 2) if p99["plain"] else None,
        },
        "gated_cell_sent_to_done": spread([r.seconds for r in gated_runs if r.seconds is not None]),
        "plain_gated_cell": spread(plain_gated),
        "requests_seen": len(book.requests),
        "gated_cells_without_request_seen": len(unmatched),
        "sent_to_visible": visible,
        "created_to_visible": spread(created_visible),
        "sent_to_created": spread(sent_created),
        "execute_input_to_output": spread(input_output),
        "execute_input_to_start_stored": spread(input_start),
        "start_stored_to_output": spread(start_output),
        "sent_to_push_event": spread(pushed),
        "decision_to_running": running,
        "decision_to_execute_input": spread(decision_input),
        "decision_call": spread(book.decision_seconds),
        "queue_reads": {"count": book.list_reads, **spread(book.list_seconds)},
        "approver_errors": book.errors[:10],
        "records": head_after - head_before,
        "records_per_s": round((head_after - head_before) / load_s, 1),
        "records_per_s_best_5s": round(best5, 1),
        "service_peak_rss_mb": round(sampler.hwm_kib / 1024, 1),
        "service_pids": sorted(sampler.service_pids),
        "service_cpu_s": round(cpu_after - cpu_before, 1),
        "cpu_s_by_part": cpu_groups,
        "load_phase_s": round(load_s, 1),
        "kernel_start_s": round(kernels_s, 1),
        "load_average": {
            "mean": round(statistics.mean(s[3] for s in window), 2) if window else None,
            "max": round(max(s[3] for s in window), 2) if window else None,
        },
        "targets": {
            "cells_lost_0": lost == 0,
            "integrity_alerts_0": alerts == 0,
            "verify_valid": bool(verify.get("ok")),
            "sent_to_visible_p99_lt_1s": visible["p99_ms"] < TARGET_S * 1000,
            "decision_to_running_p99_lt_1s": running["p99_ms"] < TARGET_S * 1000,
        },
    }
    return summary


def print_table(s: dict[str, Any]) -> None:
    c, o, t = s["cell_ms"], s["overhead_ms"], s["targets"]

    def met(ok: bool) -> str:
        return "met" if ok else "**missed**"

    rows = [
        (
            "load",
            f"{s['users']} users, {s['governed_kernels']} governed + {s['plain_kernels']} plain kernels, "
            f"{s['cells_per_kernel']} cells each, {s['gated_percent']:g} % gated",
            "",
        ),
        (
            "cells run (failed)",
            f"governed {s['cells_sent']['governed']} ({s['cells_failed']['governed']}), "
            f"plain {s['cells_sent']['plain']} ({s['cells_failed']['plain']})",
            "",
        ),
        (
            "cells lost (no cell.start / cell.end)",
            f"{s['cells_lost']} (start {s['cells_missing_records']['cell.start']}, "
            f"end {s['cells_missing_records']['cell.end']}; request.execute missing "
            f"{s['cells_missing_records']['request.execute']})",
            met(t["cells_lost_0"]),
        ),
        (
            "cells whose records hold the msg_id masked",
            f"{max(s['cells_with_masked_msg_id'].values())} (found by pattern; counted as recorded)",
            "",
        ),
        ("integrity alerts (none is due)", str(s["integrity_alerts"]), met(t["integrity_alerts_0"])),
        ("verify", f"{s['verify'].get('summary')} ({s['verify_seconds']} s)", met(t["verify_valid"])),
        ("per cell, plain python3", show(c["plain"]), ""),
        ("per cell, governed via Hub", show(c["governed"]), ""),
        (
            "overhead per cell",
            f"p50 +{o['p50']} ms ({s['ratio']['p50']}x), p99 +{o['p99']} ms ({s['ratio']['p99']}x)",
            "",
        ),
        ("gated cell, sent → done", show(s["gated_cell_sent_to_done"]), ""),
        ("sent → visible in queue", show(s["sent_to_visible"]), met(t["sent_to_visible_p99_lt_1s"])),
        ("— sent → request created", show(s["sent_to_created"]), ""),
        ("— created → visible in queue", show(s["created_to_visible"]), ""),
        ("— sent → push event", show(s["sent_to_push_event"]), ""),
        (
            "decision → kernel running",
            show(s["decision_to_running"]),
            met(t["decision_to_running_p99_lt_1s"]),
        ),
        ("— decision → execute_input", show(s["decision_to_execute_input"]), ""),
        ("— execute_input → first output", show(s["execute_input_to_output"]), ""),
        ("—— execute_input → start record stored", show(s["execute_input_to_start_stored"]), ""),
        ("—— start record stored → first output", show(s["start_stored_to_output"]), ""),
        ("— decision call (approver)", show(s["decision_call"]), ""),
        (
            "service records/s",
            f"{s['records_per_s']} average ({s['records']} records in {s['load_phase_s']} s), "
            f"best 5 s {s['records_per_s_best_5s']}",
            "",
        ),
        ("— records by type", ", ".join(f"{k} {v}" for k, v in s["records_by_type"].items()), ""),
        ("service peak RSS", f"{s['service_peak_rss_mb']} MB (VmHWM); CPU {s['service_cpu_s']} s", ""),
        ("CPU s in the load phase", ", ".join(f"{k} {v}" for k, v in s["cpu_s_by_part"].items()), ""),
        ("load average", f"mean {s['load_average']['mean']}, max {s['load_average']['max']}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, target in rows:
        print(f"  {name:<{width}}  {value}{'   ' + target if target else ''}")


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM cleans up like Ctrl-C."""

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def versions() -> dict[str, str]:
    python = str(hub_python())
    code = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({'python': sys.version.split()[0], **{p: m.version(p) for p in "
        "('jupyterhub', 'jupyter_server', 'ipykernel', 'tornado', 'sqlalchemy', 'psycopg')}}))"
    )
    found = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    result: dict[str, str] = json.loads(found.stdout) if found.returncode == 0 else {}
    chp = subprocess.run(
        ["configurable-http-proxy", "--version"], capture_output=True, text=True, check=False
    )
    result["configurable-http-proxy"] = chp.stdout.strip()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=10, help="analysts, each with a single-user server")
    parser.add_argument("--kernels", type=int, default=20, help="governed kernels (and as many plain ones)")
    parser.add_argument("--cells", type=int, default=200, help="cells per kernel")
    parser.add_argument("--gated-percent", type=float, default=10.0, help="share of cells that need approval")
    parser.add_argument(
        "--poll", type=float, default=2.0, help="approvers also read the queue every S seconds"
    )
    parser.add_argument(
        "--think",
        type=float,
        default=0.1,
        help="pause before each cell, seconds (0: back to back, see above)",
    )
    parser.add_argument("--start-concurrency", type=int, default=4, help="kernels started at once")
    parser.add_argument("--json", type=Path, help="also write the summary to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_hub.py needs root (the Hub starts processes as other OS users)", file=sys.stderr)
        return 2
    people, groups = bench_people(args.users)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, {platform.platform()}")
    print(f"versions: {json.dumps(versions())}")
    root = Path(tempfile.mkdtemp(prefix=PREFIX))
    cluster = PgCluster(durable=True, password=secrets.token_hex(12))
    stack: HubStack | None = None
    plain = PlainServer(root)
    started = time.time()
    summary: dict[str, Any] = {}
    try:
        with terminate_as_interrupt():
            cluster.start()
            stack = HubStack(
                db_url=cluster.create_database("governance"), root=root, people=people, groups=groups,
                service_user=SERVICE_USER,
                service_args=[f"--GovernedServerApp.witness_grace_seconds={WITNESS_GRACE_S}"],
            )  # fmt: skip
            print(
                f"starting the Hub, its governance service and {args.users} single-user servers ...",
                flush=True,
            )
            stack.start()
            plain.start()
            analysts = [name for name in people if name.startswith("a") and name[1:].isdigit()]
            with ThreadPoolExecutor(max_workers=len(analysts)) as pool:
                list(pool.map(lambda who: stack.start_server(who, timeout=300), analysts))
            setup_s = time.time() - started
            print(f"  up in {setup_s:.1f} s", flush=True)
            summary = asyncio.run(load(args, stack, plain, cluster))
            summary["setup_s"] = round(setup_s, 1)
            summary["versions"] = versions()
            summary["cores"] = os.cpu_count()
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        plain.stop()
        if stack is not None:
            stack.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    print("\nresults")
    print_table(summary)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    failed = summary["cells_lost"] or summary["cells_failed"]["governed"] or summary["cells_failed"]["plain"]
    wrong = not summary["targets"]["verify_valid"] or summary["integrity_alerts"]
    return 1 if failed or wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
