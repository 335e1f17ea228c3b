"""Every governance endpoint goes through jupyter_server's authorizer, not only authentication."""

from __future__ import annotations

from typing import Any

import pytest
from api_routes import fetch, get_routes  # type: ignore[import-not-found]
from jupyter_server.auth.authorizer import Authorizer
from tornado.httpclient import HTTPClientError

from governed_server.service.handlers.base import AUTH_RESOURCE

CREDENTIAL_ROUTES = ("governance/api/kernel/", "governance/api/servers/kernels/00000000")


class DenyGovernance(Authorizer):
    """Allows everything except the governance resource."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return bool(resource != AUTH_RESOURCE)


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"governed_server": True},
            "authorizer_class": DenyGovernance,
        }
    }


async def test_an_authenticated_user_without_the_governance_permission_gets_403(jp_fetch: Any) -> None:
    routes = get_routes()
    assert any(not route.startswith(CREDENTIAL_ROUTES) for _, route in routes)
    for method, route in routes:
        with pytest.raises(HTTPClientError) as raised:
            await fetch(jp_fetch, method, route)
        # Kernel and kernel-server routes never accept a user, authorized or not: they need a
        # kernel's credential (or its server's).
        expected = 401 if route.startswith(CREDENTIAL_ROUTES) else 403
        assert raised.value.code == expected, (method, route)
    # The rest of the server still answers: the denial is specific to the governance resource.
    response = await jp_fetch("api", "status")
    assert response.code == 200
