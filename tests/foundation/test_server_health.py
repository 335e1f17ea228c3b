"""The governance API inside a real jupyter_server (pytest-jupyter fixtures)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from governed_kernel import KERNEL_NAME, __version__
from governed_server.handlers import default_handlers

pytestmark = pytest.mark.filterwarnings("error::jupyter_server.utils.JupyterServerAuthWarning")


@pytest.fixture
def jp_server_config(tmp_path: Any) -> dict[str, Any]:
    policy = tmp_path / "policy.yaml"
    policy.write_text("name: test\n")
    return {
        "ServerApp": {"jpserver_extensions": {"governed_server": True}},
        "GovernedServerApp": {"policy_path": str(policy), "db_url": "sqlite:///:memory:"},
    }


def get_routes() -> list[str]:
    """Every GET route of the API, as plain paths (the pattern minus its optional slash)."""
    return [pattern.removesuffix("/?").lstrip("/") for pattern, _ in default_handlers()]


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
    assert body["store"] == "sqlite:///:memory:"
    assert body["user"]


@pytest.mark.parametrize("headers", [{"Authorization": ""}, {"Authorization": "token not-the-token"}])
async def test_every_endpoint_refuses_requests_without_a_valid_token(
    jp_fetch: Any, headers: dict[str, str]
) -> None:
    for route in get_routes():
        with pytest.raises(HTTPClientError) as raised:
            await jp_fetch(*route.split("/"), headers=headers)
        assert raised.value.code in (401, 403), route


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
