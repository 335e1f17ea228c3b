"""A policy that asks for two distinct approvers."""

from __future__ import annotations

from typing import Any

import pytest
from service_helpers import Api, cell_request  # type: ignore[import-not-found]


@pytest.fixture
def approval_settings() -> dict[str, Any]:
    return {"required_approvers": 2, "pending_ttl_minutes": 30, "validity": "once"}


async def test_two_distinct_approvers_are_needed_and_the_approval_is_used_once(
    api: Api, governance: Any
) -> None:
    kernel = ("kernel", governance.service.credentials.mint("k1", "alice"))
    body = cell_request(policy_version=governance.service.policy.version)
    status, request = await api(kernel, "POST", "kernel/approvals", body)
    assert (status, request["required_approvals"]) == (201, 2)
    path = f"approvals/{request['id']}/decision"

    status, first = await api("bob", "POST", path, {"decision": "approve", "reason": "looks fine"})
    assert (status, first["status"], first["approvals"]) == (200, "pending", 1)
    status, again = await api("bob", "POST", path, {"decision": "approve", "reason": "really fine"})
    assert status == 409
    assert "already decided" in again["message"]
    status, second = await api("carol", "POST", path, {"decision": "approve", "reason": "agreed"})
    assert (status, second["status"], second["approvals"]) == (200, "approved", 2)

    use = f"kernel/approvals/{request['id']}/use"
    assert (await api(kernel, "POST", use, {"cell_hash": body["cell_hash"]}))[0] == 200
    status, refused = await api(kernel, "POST", use, {"cell_hash": body["cell_hash"]})
    assert status == 409
    assert "once" in refused["message"]
    status, renewed = await api(kernel, "POST", "kernel/approvals", body)
    assert (status, renewed["status"]) == (201, "pending")
