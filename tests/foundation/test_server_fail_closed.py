"""A policy that does not load leaves the server up, says why, and refuses every governed action."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError


@pytest.fixture
def jp_server_config(tmp_path: Path) -> dict[str, Any]:
    policy = tmp_path / "broken.yaml"
    policy.write_text("schema_version: 1\nname: broken\nmode: enforce\nroles: [not, a, mapping]\n")
    return {
        "ServerApp": {"jpserver_extensions": {"governed_server": True}},
        "GovernedServerApp": {
            "policy_path": str(policy),
            "db_url": f"sqlite:///{tmp_path / 'store' / 'governance.sqlite'}",
        },
    }


async def test_health_names_the_located_policy_error(jp_fetch: Any, tmp_path: Path) -> None:
    body = json.loads((await jp_fetch("governance", "api", "health")).body)
    assert body["status"] == "unavailable"
    assert f"{tmp_path / 'broken.yaml'}:" in body["problem"]
    assert "roles" in body["problem"]


async def test_governed_actions_answer_503_with_the_reason(jp_fetch: Any) -> None:
    for path in (("approvals",), ("me",), ("audit",)):
        with pytest.raises(HTTPClientError) as raised:
            await jp_fetch("governance", "api", *path)
        assert raised.value.code == 503
        assert raised.value.response is not None
        assert "not available" in json.loads(raised.value.response.body)["message"]
    with pytest.raises(HTTPClientError) as raised:
        await jp_fetch(
            "governance", "api", "kernel", "audit", method="POST", body="{}",
            headers={"Authorization": "GovernedKernel whatever"},
        )  # fmt: skip
    assert raised.value.code == 503
