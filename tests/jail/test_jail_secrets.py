"""A cell in a governed kernel, written as an attacker would, goes after the secrets of the people who
check it: it finds none, and cannot undo the jail.

The server here runs as this test process, with real secrets the test knows: the server's token (in
``jpserver-*.json``), the cookie secret, a config file with a token and a database password, the
signing key, the store, the checkpoints, the demo's tokens file, other kernels' connection files, and
secrets in its environment. The policy is in observe mode, so nothing in the kernel stops the cell:
what holds is the OS.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from governance_service import TOKENS  # type: ignore[import-not-found]
from jail_helpers import run, start_kernel, stop_kernel  # type: ignore[import-not-found]

pytestmark = pytest.mark.jail

SERVER_TOKEN = "server-token-" + secrets.token_hex(16)
ENV_SECRETS = {
    "JUPYTERHUB_API_TOKEN": "hub-api-" + secrets.token_hex(16),
    "JUPYTER_TOKEN": "jupyter-token-" + secrets.token_hex(16),
    "GOVERNED_API_TOKEN": "governed-api-" + secrets.token_hex(16),
    "GOVERNED_DB_URL": f"postgresql://gov:dbpw{secrets.token_hex(12)}@db.example/governance",
    "SOME_SERVICE_PASSWORD": "pw-" + secrets.token_hex(16),
}

ATTACK = r"""
import ctypes, glob, json, os, subprocess
TARGETS = json.loads({targets!r})
SERVER_PID = {server_pid}
report = {{"read": {{}}, "files": {{}}, "commands": {{}}, "env": dict(os.environ), "listed": {{}}}}

def read(path, limit=65536):
    try:  # non-blocking: /proc/*/fd/0 is a pipe nobody writes to
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            data = os.read(fd, limit)
        finally:
            os.close(fd)
    except Exception as error:
        return {{"error": type(error).__name__}}
    report["read"][path] = data.decode("utf-8", "replace")
    return {{"size": len(data)}}

def walk(root):
    for folder, dirs, files in os.walk(root, onerror=lambda e: report["listed"].setdefault(root, repr(e))):
        for name in files:
            read(os.path.join(folder, name))

for root in TARGETS["dirs"]:
    report["listed"][root] = sorted(os.listdir(root)) if os.path.isdir(root) else "absent"
    walk(root)
for path in TARGETS["files"]:
    report["files"][path] = read(path)

proc = [f"/proc/{{SERVER_PID}}/{{name}}" for name in ("environ", "cmdline", "mem", "maps", "status")]
proc += glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline")
proc += glob.glob(f"/proc/{{SERVER_PID}}/fd/*") + glob.glob("/proc/1/fd/*") + glob.glob("/proc/*/fd/*")
for pid in (SERVER_PID, 1):
    proc += [f"/proc/{{pid}}/root{{path}}" for path in TARGETS["files"]]
    proc += [f"/proc/{{pid}}/cwd/{{name}}" for name in ("kernel.json", "jupyter_cookie_secret")]
for path in proc:
    report["files"][path] = read(path)
report["server_pid_visible"] = os.path.exists(f"/proc/{{SERVER_PID}}")
report["status"] = read("/proc/self/status") and report["read"].get("/proc/self/status", "")

key = TARGETS["files"][0]
commands = [["umount", hidden] for hidden in TARGETS["hidden"]] + [
    ["umount", "-l", "/tmp"], ["mount", "-o", "remount,rw", "/"], ["mount", "-t", "tmpfs", "x", "/mnt"],
    ["mount", "--bind", "/", "/mnt"], ["nsenter", "-t", "1", "-m", "-p", "cat", key],
    ["nsenter", "-t", str(SERVER_PID), "-a", "cat", key],
    ["unshare", "-r", "-m", "sh", "-c", f"umount {{TARGETS['hidden'][0]}} && cat {{key}}"],
    ["unshare", "-U", "-m", "sh", "-c", f"umount -l {{TARGETS['hidden'][0]}}; cat {{key}}"],
] + [["mv", path, path + "-moved"] for path in TARGETS["hidden"] + TARGETS["ancestors"]]
for argv in commands:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        report["commands"][" ".join(argv)] = [done.returncode, done.stdout[-2000:], done.stderr[-500:]]
    except Exception as error:
        report["commands"][" ".join(argv)] = [-1, "", type(error).__name__]
libc = ctypes.CDLL(None, use_errno=True)
for hidden in TARGETS["hidden"]:
    report["commands"]["umount2 " + hidden] = [libc.umount2(hidden.encode(), 2), "", str(ctypes.get_errno())]
for path in TARGETS["files"]:  # after all that: still hidden?
    report["files"]["again " + path] = read(path)
print(json.dumps(report))
"""


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    jp_server_config["NamedTokenIdentityProvider"]["token"] = SERVER_TOKEN
    return jp_server_config


@pytest.fixture(params=["default", "secrets in a writable folder"])
def jail_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The test's folders are all in /tmp, which the jail replaces with an empty one: the second
    layout makes the whole folder writable for kernels (as a home directory is), so that only the
    jail's own mounts stand between the cell and the secrets inside it."""
    return {} if request.param == "default" else {"jail_writable_paths": [str(tmp_path)]}


async def test_a_cell_finds_no_secret_and_cannot_undo_the_jail(
    bubblewrap: str,
    governed_kernelspec: None,
    echo_kernel_spec: Any,
    jp_fetch: Any,
    jp_serverapp: Any,
    governance: Any,
    jp_config_dir: Path,
    jp_data_dir: Path,
    jp_runtime_dir: Path,
    jp_root_dir: Path,
    jp_home_dir: Path,
    server_paths: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from governed_server.demo import default_demo_dir, load_tokens

    for name, value in ENV_SECRETS.items():
        monkeypatch.setenv(name, value)
    jp_serverapp.write_server_info_file()
    config_secret = "config-token-" + secrets.token_hex(16)
    (jp_config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"IdentityProvider": {"token": config_secret}})
    )
    demo_tokens = load_tokens(default_demo_dir())
    store_marker = "storemarker" + secrets.token_hex(8).translate(str.maketrans("0123456789", "ghijklmnop"))
    governance.service.credentials.mint("marker-kernel", store_marker)
    (jp_root_dir / "visible.txt").write_text("the analyst's own file")

    other_governed = await start_kernel(jp_fetch, user="bob")
    echo = await start_kernel(jp_fetch, user="alice", name="echo")
    kernel_id = await start_kernel(jp_fetch, user="alice")
    try:
        first = await run(jp_serverapp, kernel_id, "x = 1")
        assert first.status == "ok", first.text
        checkpoint = governance.service.audit.checkpoint()
        assert checkpoint is not None, "a checkpoint is needed for the test"

        km = jp_serverapp.kernel_manager
        other_keys = [km.get_kernel(k).session.key.decode() for k in (other_governed, echo)]
        other_files = [km.get_kernel(k).connection_file for k in (other_governed, echo)]
        own_file = km.get_kernel(kernel_id).connection_file
        cookie_file = Path(jp_serverapp.cookie_secret_file)
        store, key_file = server_paths["store"], server_paths["key"]
        files = [
            str(key_file), str(store), f"{store}-wal", f"{store}-shm", str(cookie_file),
            jp_serverapp.info_file, str(jp_config_dir / "jupyter_server_config.json"),
            str(default_demo_dir() / "demo-tokens.json"),
            str(server_paths["checkpoints"] / "checkpoints.jsonl"), *other_files,
        ]  # fmt: skip
        hidden = [str(jp_data_dir), str(jp_runtime_dir), str(jp_config_dir), str(store.parent),
                  str(key_file.parent), str(server_paths["checkpoints"])]  # fmt: skip
        ancestors = [str(jp_runtime_dir / "governed"), str(Path(own_file).parent)]
        targets = {"files": files, "hidden": hidden, "ancestors": ancestors,
                   "dirs": [*hidden, str(tmp_path), str(jp_home_dir), str(jp_root_dir)]}  # fmt: skip
        code = ATTACK.format(targets=json.dumps(targets), server_pid=os.getpid())
        ran = await run(jp_serverapp, kernel_id, code, timeout=180)
        assert ran.status == "ok", ran.text[-3000:]
        report = json.loads(ran.stdout)
        moved = [path for path in [*hidden, *ancestors] if not Path(path).exists()]
    finally:
        for k, user in ((kernel_id, "alice"), (other_governed, "bob"), (echo, "alice")):
            await stop_kernel(jp_fetch, k, user)

    from governed_server.single_user.process_guard import is_dumpable

    assert is_dumpable() is False, "the server process must not be dumpable"
    # The check proves something: the cell ran, read what it may, and has its own credential.
    assert report["read"].get(str(jp_root_dir / "visible.txt")) == "the analyst's own file"
    assert report["env"].get("GOVERNED_KERNEL_TOKEN"), "the kernel's own credential is there"
    assert Path(own_file).parent.name != jp_runtime_dir.name, "the kernel has a directory of its own"

    secret_values = {
        "server token": SERVER_TOKEN,
        "cookie secret": cookie_file.read_bytes().decode(errors="replace").strip(),
        "config file token": config_secret,
        "signing key": key_file.read_text().splitlines()[1],
        "checkpoint signature": checkpoint.signature,
        "store contents": store_marker,
        **{f"demo token {name}": value for name, value in demo_tokens.items()},
        **{f"named user token {name}": value for name, value in TOKENS.items()},
        **{f"other kernel's connection key {n}": value for n, value in enumerate(other_keys)},
        **{f"server env {name}": value for name, value in ENV_SECRETS.items()},
    }
    assert all(len(value) >= 16 for value in secret_values.values()), secret_values.keys()
    found = [what for what, value in secret_values.items() if value in ran.text]
    assert not found, f"secrets reached the cell: {found}"

    opened = {path: result for path, result in report["files"].items() if result.get("size")}
    assert not [path for path in opened if any(path.endswith(f) for f in files)], opened
    assert not report["server_pid_visible"]
    for name in ENV_SECRETS:
        assert name not in report["env"], name
    assert "CapEff:\t0000000000000000" in report["status"]
    succeeded = {
        argv: r for argv, r in report["commands"].items() if r[0] == 0 and not argv.startswith("mv ")
    }
    assert not succeeded, f"the cell changed its mounts or namespaces: {succeeded}"
    assert not moved, f"the cell moved {moved} away (its files would come back elsewhere)"
    own_dir = str(Path(own_file).parent)
    for path in report["read"]:
        if any(path.startswith(root + "/") for root in hidden):
            assert path.startswith(own_dir + "/"), f"the cell read {path}"
    for root in hidden:
        if root != str(jp_runtime_dir):  # which holds the way to the kernel's own directory
            assert report["listed"].get(root) in ([], "absent"), (root, report["listed"].get(root))
