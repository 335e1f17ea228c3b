"""Two people on one notebook get a kernel each: nobody works in, sees or stops a kernel another
person started, by any route, unless the policy shares kernels (``sessions.share_kernels``).

Written as the second person would try it: open the same path, name the other's kernel id in a new
session or a PATCH, list, read, interrupt, restart, delete it, connect to its websocket.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from service_helpers import TOKENS, write_policy  # type: ignore[import-not-found]
from tornado.httpclient import HTTPClientError

NOTEBOOK = "shared/analysis.ipynb"


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the rule lives in the server's memory, not in the store


@pytest.fixture
def share_kernels() -> bool | None:
    return None


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], tmp_path: Path, share_kernels: bool | None) -> Any:
    if share_kernels is not None:
        policy = write_policy(tmp_path / "shared-policy.yaml", sessions={"share_kernels": share_kernels})
        jp_server_config["GovernedServerApp"]["policy_path"] = str(policy)
    return jp_server_config


@pytest.fixture
def as_user(jp_fetch: Any, governance: Any) -> Any:
    """``await as_user(name, method, *path, body=None)`` → (status, JSON or None); None: the server token."""

    async def call(who: str | None, method: str, *path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"token {TOKENS[who]}"} if who else {}
        kwargs: dict[str, Any] = {"method": method, "headers": headers}
        if body is not None or method in ("POST", "PATCH"):
            kwargs["body"] = json.dumps(body if body is not None else {})
        try:
            response = await jp_fetch(*path, **kwargs)
        except HTTPClientError as error:
            assert error.response is not None
            return error.code, json.loads(error.response.body or b"null")
        return response.code, json.loads(response.body) if response.body else None

    return call


async def open_notebook(as_user: Any, who: str | None, path: str = NOTEBOOK) -> dict[str, Any]:
    """What JupyterLab does when a person opens a notebook: POST a session for its path."""
    body = {"path": path, "type": "notebook", "name": "", "kernel": {"name": "echo"}}
    status, session = await as_user(who, "POST", "api", "sessions", body=body)
    assert status == 201, session
    return dict(session)


async def test_the_second_person_on_a_notebook_gets_a_kernel_of_their_own(as_user: Any) -> None:
    alice = await open_notebook(as_user, "alice")
    bob = await open_notebook(as_user, "bob")
    assert bob["id"] != alice["id"] and bob["kernel"]["id"] != alice["kernel"]["id"]
    assert bob["path"] == alice["path"] == NOTEBOOK
    again = await open_notebook(as_user, "alice")  # reopening: the same session, not a third kernel
    assert (again["id"], again["kernel"]["id"]) == (alice["id"], alice["kernel"]["id"])

    for who, mine in (("alice", alice), ("bob", bob)):
        _, sessions = await as_user(who, "GET", "api", "sessions")
        assert [s["id"] for s in sessions] == [mine["id"]]
        _, kernels = await as_user(who, "GET", "api", "kernels")
        assert [k["id"] for k in kernels] == [mine["kernel"]["id"]]


async def test_every_route_to_another_persons_kernel_is_refused(as_user: Any) -> None:
    alice = await open_notebook(as_user, "alice")
    bob = await open_notebook(as_user, "bob", "bob.ipynb")
    kernel_id = alice["kernel"]["id"]
    attempts = [
        ("GET", ("api", "kernels", kernel_id), None),
        ("POST", ("api", "kernels", kernel_id, "interrupt"), None),
        ("POST", ("api", "kernels", kernel_id, "restart"), None),
        ("DELETE", ("api", "kernels", kernel_id), None),
        ("GET", ("api", "sessions", alice["id"]), None),
        ("PATCH", ("api", "sessions", alice["id"]), {"path": "taken.ipynb"}),
        ("DELETE", ("api", "sessions", alice["id"]), None),
        ("POST", ("api", "sessions"), {"path": "x.ipynb", "type": "notebook", "kernel": {"id": kernel_id}}),
        ("PATCH", ("api", "sessions", bob["id"]), {"kernel": {"id": kernel_id}}),
    ]
    for method, path, body in attempts:
        status, answer = await as_user("bob", method, *path, body=body)
        assert status == 403, (method, path, status, answer)
        assert "another person" in answer["message"], answer
    _, mine = await as_user("alice", "GET", "api", "sessions", alice["id"])
    assert mine["path"] == NOTEBOOK and mine["kernel"]["id"] == kernel_id
    _, kernels = await as_user("alice", "GET", "api", "kernels")
    assert kernel_id in [k["id"] for k in kernels]
    _, bobs = await as_user("bob", "GET", "api", "sessions", bob["id"])
    assert bobs["kernel"]["id"] == bob["kernel"]["id"]


async def test_another_persons_kernel_websocket_is_refused(as_user: Any, jp_ws_fetch: Any) -> None:
    alice = await open_notebook(as_user, "alice")
    with pytest.raises(HTTPClientError) as refused:
        await jp_ws_fetch(
            "api", "kernels", alice["kernel"]["id"], "channels",
            headers={"Authorization": f"token {TOKENS['bob']}"},
        )  # fmt: skip
    assert refused.value.code == 403
    ws = await jp_ws_fetch(
        "api", "kernels", alice["kernel"]["id"], "channels",
        headers={"Authorization": f"token {TOKENS['alice']}"},
    )  # fmt: skip
    ws.close()


async def test_holders_of_the_servers_own_token_are_one_person(as_user: Any) -> None:
    """jupyter_server names each token login a random "Anonymous" user; they all hold one secret,
    so a plain ``jupyter lab`` keeps working across requests, browsers and API clients."""
    first = await open_notebook(as_user, None)
    again = await open_notebook(as_user, None)
    assert again["kernel"]["id"] == first["kernel"]["id"]
    status, _ = await as_user(None, "POST", "api", "kernels", first["kernel"]["id"], "interrupt")
    assert status == 204
    status, _ = await as_user("alice", "POST", "api", "kernels", first["kernel"]["id"], "interrupt")
    assert status == 403


@pytest.mark.parametrize("share_kernels", [True])
async def test_a_policy_that_shares_kernels_attaches_the_second_person(as_user: Any) -> None:
    alice = await open_notebook(as_user, "alice")
    bob = await open_notebook(as_user, "bob")
    assert bob["kernel"]["id"] == alice["kernel"]["id"]
    _, kernels = await as_user("bob", "GET", "api", "kernels")
    assert alice["kernel"]["id"] in [k["id"] for k in kernels]
