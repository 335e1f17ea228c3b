"""Outbound guard cost: GET of files with and without the guard, in the same run.

Two ``jupyter server`` processes serve the same folder with the governance extension, one with the
outbound guard (the default) and one with ``GovernedServerApp.guard_file_routes=False`` (what
jupyter_server does on its own). Files: ordinary text with card numbers (~1% of lines,
``masking_corpus.ordinary_text``) of 1 MB and 20 MB, the 20 MB text without any card number, a
number-dense log of 1 MB, and a notebook of 200 cells with outputs (~2 MB, a few card numbers). For
each file and route, requests alternate between the servers (ABBA per round) and the ratio of the
medians is the figure::

    python bench/bench_contents.py [--rounds 9] [--big-mb 20]

Routes: the contents API (``/api/contents/<file>``, what JupyterLab opens), ``/files/<file>`` whole
(a download) and a 64 KiB ``Range`` of it (a viewer or media player). ``/files/`` keeps masked
files in a cache keyed by the file's identity and times; "cold" rows change the file's times before
each guarded request (a miss: the whole file is read and masked again) to show that cost too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from masking_corpus import load_pans, number_dense_log, ordinary_text  # noqa: E402

TOKEN = "bench-contents-token"


def notebook(cells: int, seed: int = 3) -> str:
    rng = random.Random(seed)
    pans = load_pans()
    text, _ = ordinary_text(cells * 8000, seed=seed)
    chunks = [text[i * 8000 : (i + 1) * 8000] for i in range(cells)]
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "governed-python", "display_name": "x", "language": "python"}},
        "cells": [
            {
                "cell_type": "code",
                "id": f"cell-{index:04x}".replace("0", "g"),
                "metadata": {},
                "execution_count": index + 1,
                "source": f"summary_{index} = describe(frame, {index})\nsummary_{index}",
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": chunk},
                    {
                        "output_type": "execute_result",
                        "execution_count": index + 1,
                        "metadata": {},
                        "data": {
                            "text/plain": f"card {rng.choice(pans)}" if index % 50 == 0 else f"rows {index}",
                            "text/html": f"<table><tr><td>{index}</td></tr></table>",
                        },
                    },
                ],
            }
            for index, chunk in enumerate(chunks)
        ],
    }
    return json.dumps(nb, indent=1)


def write_files(root: Path, big_mb: int) -> dict[str, bytes]:
    files = {
        "text-1mb.txt": ordinary_text(1_000_000)[0].encode(),
        f"text-{big_mb}mb.txt": ordinary_text(big_mb * 1_000_000)[0].encode(),
        f"clean-{big_mb}mb.txt": ordinary_text(big_mb * 1_000_000)[0].encode(),
        "log-1mb.log": number_dense_log(1_000_000)[0].encode(),
        "analysis.ipynb": notebook(200).encode(),
    }
    # The clean file: the same text with every digit a letter (no card number, same scan work).
    files[f"clean-{big_mb}mb.txt"] = files[f"clean-{big_mb}mb.txt"].translate(
        bytes.maketrans(b"0123456789", b"abcdefghij")
    )
    for name, data in files.items():
        (root / name).write_bytes(data)
    return files


@contextmanager
def server(root: Path, home: Path, *args: str) -> Iterator[str]:
    port = _free_port()
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
    }
    argv = [
        sys.executable, "-m", "jupyter_server", "--allow-root", "--no-browser", f"--port={port}",
        f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={TOKEN}", "--ServerApp.log_level=WARN",
        '--ServerApp.jpserver_extensions={"governed_server": True}',
        f"--GovernedServerApp.db_url=sqlite:///{home / 'store.sqlite'}", *args,
    ]  # fmt: skip
    log = (home / "server.log").open("w")
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/status", headers=_auth(), timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start:\n{(home / 'server.log').read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _auth() -> dict[str, str]:
    return {"Authorization": f"token {TOKEN}"}


def timed(
    client: httpx.Client, url: str, headers: dict[str, str], check: Callable[[httpx.Response], None]
) -> float:
    started = time.perf_counter()
    response = client.get(url, headers={**_auth(), **headers})
    elapsed = time.perf_counter() - started
    check(response)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds per measure (default 9)")
    parser.add_argument("--big-mb", type=int, default=20, help="size of the large text files (default 20)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-contents-"))
    root = work / "root"
    root.mkdir()
    files = write_files(root, args.big_mb)
    pans = load_pans()
    print(f"files: {', '.join(f'{name} {len(data) / 1e6:.1f} MB' for name, data in files.items())}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {args.rounds} rounds, ABBA, medians\n")
    try:
        with (
            server(root, work / "guarded") as guarded,
            server(root, work / "plain", "--GovernedServerApp.guard_file_routes=False") as plain,
            httpx.Client(timeout=120) as client,
        ):

            def measure(label: str, path: str, headers: dict[str, str], cold: bool = False) -> None:
                def check_guarded(response: httpx.Response) -> None:
                    assert response.status_code in (200, 206), (
                        label,
                        response.status_code,
                        response.text[:200],
                    )
                    body = response.text
                    assert not any(pan in body for pan in pans), (
                        f"{label}: a card number left the guarded server"
                    )

                def check_plain(response: httpx.Response) -> None:
                    assert response.status_code in (200, 206), (label, response.status_code)

                def run_guarded() -> float:
                    if cold:  # new times: the cache misses and the whole file is masked again
                        file = root / path.split("/")[-1]
                        os.utime(file)
                    return timed(client, f"{guarded}/{path}", headers, check_guarded)

                def run_plain() -> float:
                    return timed(client, f"{plain}/{path}", headers, check_plain)

                run_guarded(), run_plain()  # warm up (imports, first masking, OS page cache)
                times: dict[str, list[float]] = {"guarded": [], "plain": []}
                for index in range(args.rounds):
                    order = (("guarded", run_guarded), ("plain", run_plain))
                    for name, run in order if index % 2 == 0 else tuple(reversed(order)):
                        times[name].append(run())
                g, p = statistics.median(times["guarded"]), statistics.median(times["plain"])
                print(f"  {label:<44} guarded {g * 1000:8.1f} ms   plain {p * 1000:8.1f} ms   {g / p:5.2f}x")

            big = f"text-{args.big_mb}mb.txt"
            clean = f"clean-{args.big_mb}mb.txt"
            print("contents API (JupyterLab opening the file):")
            for name in ("text-1mb.txt", big, clean, "log-1mb.log", "analysis.ipynb"):
                measure(f"GET /api/contents/{name}", f"api/contents/{name}", {})
            print("/files/ (download), cache warm:")
            for name in ("text-1mb.txt", big, clean, "log-1mb.log", "analysis.ipynb"):
                measure(f"GET /files/{name}", f"files/{name}", {})
            print("/files/ Range 64 KiB, cache warm:")
            for name in ("text-1mb.txt", big):
                measure(
                    f"GET /files/{name} [64 KiB range]", f"files/{name}", {"Range": "bytes=100000-165535"}
                )
            print("/files/ cold (file times changed before each guarded GET: masked again):")
            for name in ("text-1mb.txt", big, "analysis.ipynb"):
                measure(f"GET /files/{name} [cold]", f"files/{name}", {}, cold=True)
                measure(f"GET /files/{name} [cold, 64 KiB range]", f"files/{name}",
                        {"Range": "bytes=100000-165535"}, cold=True)  # fmt: skip
            print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
