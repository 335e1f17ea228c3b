"""A real jupyter_server with the governance extension, named users and a test policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from service_helpers import TOKENS, Api, write_policy  # type: ignore[import-not-found]
from tornado.httpclient import HTTPClientError
from ws_client import KernelSocket  # type: ignore[import-not-found]

from governed_server.identity_provider import NamedTokenIdentityProvider


@pytest.fixture
def approval_settings() -> dict[str, Any]:
    """Override in a test module to change the policy's ``approvals`` section."""
    return {"required_approvers": 1, "pending_ttl_minutes": 30, "validity": "window", "window_minutes": 60}


@pytest.fixture
def jp_server_config(tmp_path: Path, db_url: str, approval_settings: dict[str, Any]) -> dict[str, Any]:
    """Each API test runs on SQLite and on PostgreSQL (``db_url`` is parametrised)."""
    policy = write_policy(tmp_path / "policy.yaml", **approval_settings)
    return {
        "ServerApp": {
            "jpserver_extensions": {"governed_server": True},
            "identity_provider_class": NamedTokenIdentityProvider,
        },
        "NamedTokenIdentityProvider": {"users": {token: name for name, token in TOKENS.items()}},
        "GovernedServerApp": {
            "policy_path": str(policy),
            "db_url": db_url,
            "checkpoint_dir": str(tmp_path / "checkpoints"),
            "signing_key_path": str(tmp_path / "keys" / "audit.pem"),
            "groups": {"approvers": ["carol"]},
            # pytest-jupyter's echo kernel stands for a kernel that masks nothing (explicitly allowed).
            "allow_ungoverned_kernels": True,
        },
    }


@pytest.fixture
def governance(jp_serverapp: Any) -> Any:
    """The running GovernedServerApp extension."""
    app = jp_serverapp.web_app.settings["governed_server"]
    assert app.service is not None, app.unavailable_reason
    return app


@pytest.fixture
def api(jp_fetch: Any) -> Api:
    """``await api(who, method, path, body=None, params=None)`` → (status, JSON).

    ``who`` is a username (its token), ``("kernel", token)`` for a kernel credential, or None.
    """

    async def call(
        who: str | tuple[str, str] | None,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        raw_body: bytes | None = None,
    ) -> tuple[int, Any]:
        if who is None:
            headers = {"Authorization": ""}
        elif isinstance(who, tuple):
            headers = {"Authorization": f"GovernedKernel {who[1]}"}
        else:
            headers = {"Authorization": f"token {TOKENS[who]}"}
        kwargs: dict[str, Any] = {"method": method, "headers": headers, "params": params}
        if method in ("POST", "PUT", "PATCH"):
            kwargs["body"] = (
                raw_body if raw_body is not None else json.dumps(body if body is not None else {})
            )
        try:
            response = await jp_fetch("governance", "api", *path.strip("/").split("/"), **kwargs)
        except HTTPClientError as error:
            assert error.response is not None
            try:
                payload = json.loads(error.response.body or b"null")
            except ValueError:  # a page outside the API (e.g. the server's HTML 404)
                payload = error.response.body.decode(errors="replace")
            return error.code, payload
        return response.code, json.loads(response.body or b"null")

    return call


@pytest.fixture
def governed_kernelspec(jp_data_dir: Any) -> None:
    """Install the kernelspec into the test's isolated Jupyter data dir (as pip does into sys.prefix)."""
    import shutil
    from pathlib import Path

    import governed_kernel

    shutil.copytree(
        Path(governed_kernel.__file__).parent / "kernelspec", jp_data_dir / "kernels" / "governed-python"
    )


@pytest.fixture
def open_kernel(jp_fetch: Any, jp_ws_fetch: Any) -> Any:
    """``await open_kernel(user, protocol, name="echo")`` → a ready KernelSocket on a new kernel of theirs."""
    sockets: list[Any] = []

    async def start(user: str, protocol: str | None, name: str = "echo") -> KernelSocket:
        headers = {"Authorization": f"token {TOKENS[user]}"}
        response = await jp_fetch(
            "api", "kernels", method="POST", body=json.dumps({"name": name}), headers=headers
        )
        kernel_id = json.loads(response.body)["id"]
        ws = await jp_ws_fetch(
            "api", "kernels", kernel_id, "channels", headers=headers,
            subprotocols=[protocol] if protocol else None,
        )  # fmt: skip
        sockets.append(ws)
        socket = KernelSocket(ws, protocol)
        socket.kernel_id = kernel_id
        await socket.ready()
        return socket

    yield start
    for ws in sockets:
        ws.close()
