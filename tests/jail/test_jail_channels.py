"""Another OS user cannot connect to a governed kernel's channels, and no channel listens on TCP.

The kernel's channels are IPC sockets (owner only) in a directory of its own (0700). The test creates
an OS user and, as that user, tries to connect to every socket and read the connection file; it
also loosens the folders above the sockets, to show that the sockets' own mode holds as well.
Root only (creating a user); CI runs as root.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest
from jail_helpers import run, start_kernel, stop_kernel  # type: ignore[import-not-found]

pytestmark = [
    pytest.mark.jail,
    pytest.mark.skipif(os.geteuid() != 0, reason="creating an OS user needs root (CI runs as root)"),
]

OTHER_USER = "gk-jail-other"

PROBE = r"""
import json, socket, sys
results = {}
for path in sys.argv[1:]:
    try:
        if path.endswith(".json"):
            open(path).read()
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(path)
        results[path] = "connected"
    except OSError as error:
        results[path] = type(error).__name__
print(json.dumps(results))
"""


FORK = """
import multiprocessing as mp
def child():
    print("from the forked child", flush=True)
process = mp.get_context("fork").Process(target=child)
process.start()
process.join()
"""


@pytest.fixture(scope="module")
def other_user() -> str:
    exists = subprocess.run(["id", "-u", OTHER_USER], capture_output=True, check=False).returncode == 0
    if not exists:
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER], check=True
        )
    return OTHER_USER


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every user can traverse (pytest's own temp folders are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="gk-jail-", dir="/var/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


@pytest.fixture
def jail_settings(open_folder: Path) -> dict[str, Any]:
    return {"jail_kernels_dir": str(open_folder / "kernels")}


def as_user(user: str, paths: list[str]) -> dict[str, str]:
    setpriv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    done = subprocess.run(
        [*setpriv, "/usr/bin/python3", "-c", PROBE, *paths],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, str] = json.loads(done.stdout)
    return result


def listening_inet(pid: int) -> list[Any]:
    """TCP/UDP sockets in LISTEN state held by ``pid`` and its descendants (the jail's processes)."""
    found = []
    parent = psutil.Process(pid)
    for process in [parent, *parent.children(recursive=True)]:
        found += [c for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    return found


async def test_another_os_user_cannot_reach_a_kernel_channel(
    bubblewrap: str,
    other_user: str,
    open_folder: Path,
    governed_kernelspec: None,
    jp_fetch: Any,
    jp_serverapp: Any,
    governance: Any,
) -> None:
    kernel_id = await start_kernel(jp_fetch)
    try:
        ready = await run(jp_serverapp, kernel_id, "1 + 1")
        assert ready.status == "ok", ready.text
        km = jp_serverapp.kernel_manager.get_kernel(kernel_id)
        info = km.get_connection_info()
        assert info["transport"] == "ipc", info
        connection_file = Path(km.connection_file)
        kernel_dir = connection_file.parent
        sockets = [f"{info['ip']}-{info[name]}" for name in
                   ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")]  # fmt: skip
        assert all(stat.S_ISSOCK(os.stat(s).st_mode) for s in sockets), sockets
        modes = {s: stat.S_IMODE(os.stat(s).st_mode) for s in sockets}
        # Owner only (umask 077: srwx------; connecting needs the write bit, x means nothing here).
        assert not [s for s, mode in modes.items() if mode & 0o077], modes
        # (jupyter_client sets the sticky bit on the connection file's folder: tmp cleaners skip it.)
        assert stat.S_IMODE(kernel_dir.stat().st_mode) & 0o777 == 0o700
        assert stat.S_IMODE(kernel_dir.parent.stat().st_mode) & 0o777 == 0o700
        assert stat.S_IMODE(connection_file.stat().st_mode) == 0o600
        assert not listening_inet(km.provisioner.pid), "a governed kernel listens on TCP or UDP"

        targets = [*sockets, str(connection_file)]
        refused = as_user(other_user, targets)
        assert set(refused.values()) == {"PermissionError"}, refused
        # Even with the folders above opened up, the sockets and the file are the owner's alone.
        for folder in (kernel_dir.parent, kernel_dir):
            folder.chmod(0o755)
        try:
            still = as_user(other_user, targets)
        finally:
            for folder in (kernel_dir.parent, kernel_dir):
                folder.chmod(0o700)
        assert set(still.values()) == {"PermissionError"}, still
        # The owner (the server) still can: the check proves something. Output of a forked
        # process still arrives (its pipe to the IOPub thread is an IPC socket too).
        forked = await run(jp_serverapp, kernel_id, FORK)
        assert forked.status == "ok", forked.text
        assert "from the forked child" in forked.stdout, forked.text
        assert not listening_inet(km.provisioner.pid)
    finally:
        await stop_kernel(jp_fetch, kernel_id)
    assert not kernel_dir.exists(), "the kernel's directory goes away with the kernel"
