"""One real JupyterHub team deployment for the tests of this folder (tests/hubstack.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hubstack import SERVICE_USER, HubStack  # type: ignore[import-not-found]
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect
from ws_client import V1, KernelSocket  # type: ignore[import-not-found]


@pytest.fixture
def hub_kernel(hub: HubStack) -> Iterator[Any]:
    """``await hub_kernel(who)``: a governed kernel in ``who``'s server, its websocket through the Hub."""
    sockets: list[Any] = []
    started: list[tuple[str, str]] = []

    async def open_kernel(who: str = "analyst") -> KernelSocket:
        with hub.server(who) as server:
            response = server.post("api/kernels", json={"name": "governed-python"})
            assert response.status_code == 201, response.text
            kernel_id = response.json()["id"]
        started.append((who, kernel_id))
        url = hub.user_url(who).replace("http://", "ws://") + f"api/kernels/{kernel_id}/channels"
        request = HTTPRequest(url, headers={"Authorization": f"token {hub.token(who)}"})
        ws = await websocket_connect(request, subprotocols=[V1])
        sockets.append(ws)
        socket = KernelSocket(ws, V1)
        socket.kernel_id = kernel_id
        await socket.ready()
        return socket

    yield open_kernel
    for ws in sockets:
        ws.close()
    for who, kernel_id in started:
        with hub.server(who) as server:
            server.delete(f"api/kernels/{kernel_id}")


@pytest.fixture
def service_pid() -> Callable[[], int]:
    """``service_pid()``: the governance service's process (tests stop and resume it)."""

    def find() -> int:
        found = subprocess.run(
            ["pgrep", "-u", SERVICE_USER, "-f", "serve --hub"], capture_output=True, text=True, check=False
        ).stdout.split()
        assert found, "the governance service is not running"
        return int(found[0])

    return find
