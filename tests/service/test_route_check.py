"""Every route is judged at start: one that serves files unmasked stops an enforce-mode server.

The rules (:mod:`governed_server.single_user.routes`) are tested on their own, then as an operator meets them:
a real ``jupyter server`` with a small extension (``fake_ext/fake_file_route.py``) that adds
``/raw/<path>``, a tornado static handler over the root dir. In enforce mode the server exits 1
before it listens, naming the route and the setting; with the route accepted by that setting it
starts (and the accepted route serves the file as it is, which is what accepting means), while the
project's own routes still mask.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from demo_process import free_port  # type: ignore[import-not-found]
from jupyter_server.base.handlers import AuthenticatedFileHandler, FileFindHandler, JupyterHandler
from jupyter_server.services.contents.handlers import ContentsHandler
from tornado import web

from governed_kernel.resources import policies_dir
from governed_server.single_user.handlers.outbound import (
    GuardedContentsHandler,
    GuardedFileHandler,
    guarded_classes,
)
from governed_server.single_user.routes import Route, classify, file_serving_reason, refusal

FAKE_EXT = Path(__file__).resolve().parent / "fake_ext"
PAN = "4111111111111111"
TOKEN = "route-check-token"


class ReportHandler(JupyterHandler, web.StaticFileHandler):
    """Another extension's static handler."""


class MyContents(ContentsHandler):
    """A subclass of the contents handler: it may serve differently, so it is not trusted."""


class ProxyHandler(JupyterHandler):
    pass


ProxyHandler.__module__ = "jupyter_server_proxy.handlers"


def test_routes_are_judged_by_what_their_handler_serves() -> None:
    routes = [
        Route("/files/(.*)", GuardedFileHandler),
        Route("/api/contents(?P<path>.*)", GuardedContentsHandler),
        Route("/static/(.*)", FileFindHandler),
        Route("/files/(.*)", AuthenticatedFileHandler),  # behind the guarded rule: unreachable
        Route("/reports/(.*)", ReportHandler),
        Route("/mine/(.*)", MyContents),
        Route("/proxy/(.*)", ProxyHandler),
        Route("/api/status", JupyterHandler),
    ]
    verdicts = {(v.route.pattern, v.route.handler.__name__): v for v in classify(routes, guarded_classes())}
    status = {key: v.status for key, v in verdicts.items()}
    assert status == {
        ("/files/(.*)", "GuardedFileHandler"): "guarded",
        ("/api/contents(?P<path>.*)", "GuardedContentsHandler"): "guarded",
        ("/static/(.*)", "FileFindHandler"): "asset",
        ("/files/(.*)", "AuthenticatedFileHandler"): "shadowed",
        ("/reports/(.*)", "ReportHandler"): "unguarded",
        ("/mine/(.*)", "MyContents"): "unguarded",
        ("/proxy/(.*)", "ProxyHandler"): "unguarded",
        ("/api/status", "JupyterHandler"): "other",
    }
    assert "StaticFileHandler" in (file_serving_reason(ReportHandler) or "")
    assert "subclass of jupyter_server.services.contents.handlers.ContentsHandler" in (
        file_serving_reason(MyContents) or ""
    )
    # Accepted by pattern (as printed, with or without the base URL) or by class name.
    based = [Route("/user/ana/reports/(.*)", ReportHandler), Route("/user/ana/mine/(.*)", MyContents)]
    accepted = classify(based, guarded_classes(), ["/reports/(.*)", f"{__name__}.MyContents"], "/user/ana/")
    assert [v.status for v in accepted] == ["accepted", "accepted"]
    message = refusal([v for v in classify(routes, guarded_classes()) if v.status == "unguarded"], "enforce")
    assert "/reports/(.*)" in message and "GovernedServerApp.accept_unguarded_routes" in message


@contextmanager
def server(tmp_path: Path, *args: str, mode: str = "enforce") -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``jupyter server`` with the governance extension and the fake one, in its own Jupyter dirs."""
    policy = yaml.safe_load((policies_dir() / "pci-dss.yaml").read_text())
    policy["mode"] = mode
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    (root / "cards.txt").write_text(f"card {PAN}\n")
    home = tmp_path / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "PYTHONPATH": os.pathsep.join([str(FAKE_EXT), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
    }
    port = free_port()
    argv = [
        sys.executable, "-m", "jupyter_server", "--allow-root", "--no-browser", f"--port={port}",
        f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={TOKEN}",
        '--ServerApp.jpserver_extensions={"governed_server": True, "fake_file_route": True}',
        f"--GovernedServerApp.policy_path={tmp_path / 'policy.yaml'}",
        f"--GovernedServerApp.db_url=sqlite:///{tmp_path / 'store.sqlite'}", *args,
    ]  # fmt: skip
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def get(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until_up(process: subprocess.Popen[str], base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"the server exited ({process.returncode}):\n{output}")
        try:
            if get(f"{base}/api/status")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError("the server did not come up")


def test_an_unguarded_file_route_stops_an_enforce_mode_server(tmp_path: Path) -> None:
    with server(tmp_path) as (process, base):
        output, _ = process.communicate(timeout=90)
        assert process.returncode == 1, output
        assert "refusing to start (policy mode: enforce)" in output
        assert "/raw/(.*)" in output and "fake_file_route.RawFileHandler" in output
        assert "GovernedServerApp.accept_unguarded_routes" in output
        assert "Traceback" not in output, output
        assert PAN not in output
        try:
            get(f"{base}/raw/cards.txt")
        except OSError:
            pass  # never listened
        else:
            raise AssertionError("the refused server answered a request")
    assert not list((tmp_path / "home" / "runtime").glob("jpserver-*.json")), "runtime file left behind"


def test_an_accepted_route_lets_it_start_and_the_guarded_routes_still_mask(tmp_path: Path) -> None:
    with server(tmp_path, "--GovernedServerApp.accept_unguarded_routes=/raw/(.*)") as (process, base):
        wait_until_up(process, base)
        status, body = get(f"{base}/raw/cards.txt")
        assert status == 200 and PAN.encode() in body  # accepted: served as it is, the operator's call
        assert get(f"{base}/files/cards.txt") == (200, b"card ************1111\n")
        status, body = get(f"{base}/api/contents/cards.txt")
        assert status == 200 and PAN.encode() not in body


def test_observe_mode_starts_and_warns(tmp_path: Path) -> None:
    with server(tmp_path, mode="observe") as (process, base):
        wait_until_up(process, base)
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "/raw/(.*)" in output and "observe mode: starting anyway" in output
