"""The governance API inside a real jupyter_server (pytest-jupyter fixtures)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_routes import fetch, get_routes  # type: ignore[import-not-found]
from tornado.httpclient import HTTPClientError

from governed_kernel import KERNEL_NAME, __version__

pytestmark = pytest.mark.filterwarnings("error::jupyter_server.utils.JupyterServerAuthWarning")


@pytest.fixture
def jp_server_config(tmp_path: Any) -> dict[str, Any]:
    from governed_kernel.resources import policies_dir

    policy = tmp_path / "policy.yaml"
    policy.write_text((policies_dir() / "pci-dss.yaml").read_text())
    return {
        "ServerApp": {"jpserver_extensions": {"governed_server": True}},
        "GovernedServerApp": {
            "policy_path": str(policy),
            "db_url": f"sqlite:///{tmp_path / 'store' / 'governance.sqlite'}",
        },
    }


async def test_health_answers_json_for_an_authenticated_user(jp_fetch: Any, tmp_path: Any) -> None:
    response = await jp_fetch("governance", "api", "health")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = json.loads(response.body)
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert body["kernel_name"] == KERNEL_NAME
    assert body["policy_path"] == str(tmp_path / "policy.yaml")
    assert body["policy_exists"] is True
    assert body["store"] == f"sqlite:///{tmp_path / 'store' / 'governance.sqlite'}"
    assert body["policy_version"].startswith("sha256:")
    assert body["mode"] == "enforce"
    assert body["problem"] is None
    assert body["user"]


@pytest.mark.parametrize("headers", [{"Authorization": ""}, {"Authorization": "token not-the-token"}])
async def test_every_endpoint_refuses_requests_without_a_valid_token(
    jp_fetch: Any, headers: dict[str, str]
) -> None:
    routes = get_routes()
    assert len(routes) >= 13
    for method, route in routes:
        with pytest.raises(HTTPClientError) as raised:
            await fetch(jp_fetch, method, route, headers=headers)
        assert raised.value.code in (401, 403), (method, route)


async def test_governed_kernel_becomes_the_default_kernel(jp_serverapp: Any) -> None:
    assert jp_serverapp.kernel_manager.default_kernel_name == KERNEL_NAME


def test_redact_db_url_hides_passwords() -> None:
    from governed_server.paths import redact_db_url

    assert (
        redact_db_url("postgresql+psycopg://gov:s3cret@db:5432/gov")
        == "postgresql+psycopg://gov:***@db:5432/gov"
    )
    assert redact_db_url("postgresql://gov@db/gov") == "postgresql://gov@db/gov"
    assert redact_db_url("sqlite:////tmp/x.sqlite") == "sqlite:////tmp/x.sqlite"


async def test_health_says_when_the_store_is_locked(jp_fetch: Any, jp_serverapp: Any) -> None:
    """A process (a cell, where the jail is not in place) holding the SQLite store's write lock stops
    every cell's start record: health must say so, not "ok"."""
    import sqlite3

    from governed_server.service.store.engine import sqlite_path

    service = jp_serverapp.web_app.settings["governed_server"].service
    path = sqlite_path(service.store.engine.url)
    assert path is not None
    blocker = sqlite3.connect(path, timeout=0.1)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        body = json.loads((await jp_fetch("governance", "api", "health")).body)
    finally:
        blocker.rollback()
        blocker.close()
    assert body["status"] == "degraded" and body["store_state"]["state"] == "locked", body
    assert "locked" in body["problem"]
    after = json.loads((await jp_fetch("governance", "api", "health")).body)
    assert after["status"] == "ok" and after["store_state"]["state"] == "ok"
