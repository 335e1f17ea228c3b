"""Each caller x each endpoint: people by role, kernels by credential, strangers not at all."""

from __future__ import annotations

from typing import Any

import pytest
from service_helpers import Api, cell_request  # type: ignore[import-not-found]

ID = "00000000-0000-4000-8000-000000000000"

PEOPLE_ENDPOINTS = [
    ("GET", "health"),
    ("GET", "me"),
    ("GET", "approvals"),
    ("GET", f"approvals/{ID}"),
    ("POST", f"approvals/{ID}/decision"),
    ("POST", f"approvals/{ID}/cancel"),
    ("GET", "audit"),
    ("GET", "audit/verify"),
    ("POST", "credentials"),
    ("DELETE", "credentials/batch-00000000-0000-4000-8000-000000000000"),
    ("GET", "events"),  # a WebSocket: each person's view of the event bus
    ("POST", "servers/kernels"),
    ("POST", "servers/records"),
]
KERNEL_ENDPOINTS = [
    ("POST", "kernel/approvals"),
    ("GET", f"kernel/approvals/{ID}/wait"),
    ("POST", f"kernel/approvals/{ID}/use"),
    ("POST", f"kernel/approvals/{ID}/cancel"),
    ("POST", "kernel/audit"),
    ("POST", "kernel/requests"),
    ("GET", "kernel/audit/stream"),  # a WebSocket: the upgrade is authenticated like any request
    ("POST", "servers/kernels/kernel-1"),  # the server credential of a kernel (lease)
    ("DELETE", "servers/kernels/kernel-1"),
    ("POST", "servers/kernels/kernel-1/report"),
]


def test_the_matrix_covers_every_route() -> None:
    from governed_server.service.handlers import default_handlers

    paths = {path for _, path in PEOPLE_ENDPOINTS + KERNEL_ENDPOINTS}
    assert len(default_handlers()) == len(paths)


@pytest.mark.parametrize(("method", "path"), PEOPLE_ENDPOINTS + KERNEL_ENDPOINTS)
async def test_no_credentials_no_access(api: Api, method: str, path: str) -> None:
    status, _ = await api(None, method, path)
    assert status in (401, 403)


@pytest.mark.parametrize(("method", "path"), PEOPLE_ENDPOINTS)
async def test_a_kernel_credential_opens_no_people_endpoint(
    api: Api, governance: Any, method: str, path: str
) -> None:
    kernel = ("kernel", governance.service.credentials.mint("k-alice", "alice"))
    status, _ = await api(kernel, method, path)
    assert status == 403


@pytest.mark.parametrize("who", ["alice", "bob", "dave"])
@pytest.mark.parametrize(("method", "path"), KERNEL_ENDPOINTS)
async def test_a_user_token_opens_no_kernel_endpoint(api: Api, who: str, method: str, path: str) -> None:
    status, body = await api(who, method, path, cell_request(policy_version="x"))
    assert status == 401
    assert "kernel credential" in body["message"]


@pytest.mark.parametrize(("method", "path"), KERNEL_ENDPOINTS)
async def test_a_revoked_or_forged_kernel_credential_is_refused(
    api: Api, governance: Any, method: str, path: str
) -> None:
    token = governance.service.credentials.mint("k-alice", "alice")
    governance.service.credentials.revoke("k-alice")
    for credential in (token, token + "x", "forged"):
        status, body = await api(("kernel", credential), method, path, {})
        assert status == 403, credential
        assert "unknown or revoked" in body["message"]


async def test_minting_again_revokes_the_kernels_previous_credential(api: Api, governance: Any) -> None:
    old = governance.service.credentials.mint("k-alice", "alice")
    new = governance.service.credentials.mint("k-alice", "alice")
    assert (await api(("kernel", old), "POST", "kernel/audit", {"records": [{"event_type": "cell.start"}]}))[
        0
    ] == 403
    assert (await api(("kernel", new), "POST", "kernel/audit", {"records": [{"event_type": "cell.start"}]}))[
        0
    ] == 201


@pytest.mark.parametrize(
    ("who", "expected"),
    [("alice", 403), ("bob", 403), ("mallory", 403), ("dave", 200)],
)
async def test_only_auditors_read_and_verify_the_audit_log(api: Api, who: str, expected: int) -> None:
    assert (await api(who, "GET", "audit"))[0] == expected
    assert (await api(who, "GET", "audit/verify"))[0] == expected


@pytest.mark.parametrize(
    ("who", "roles"),
    [("alice", ["analyst"]), ("bob", ["approver"]), ("carol", ["approver"]),
     ("erin", ["analyst", "approver"]), ("dave", ["auditor"]), ("mallory", [])],
)  # fmt: skip
async def test_me_reports_roles_from_the_policy(api: Api, who: str, roles: list[str]) -> None:
    status, body = await api(who, "GET", "me")
    assert status == 200
    assert body["username"] == who
    assert body["roles"] == roles
    assert body["policy"]["version"].startswith("sha256:")
