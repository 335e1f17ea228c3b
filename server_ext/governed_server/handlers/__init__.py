"""HTTP handlers of the governance API; each stays thin: parse, authorize, call, reply."""

from __future__ import annotations

from typing import Any

from governed_server.handlers.health import HealthHandler

API_PREFIX = "/governance/api"


def default_handlers() -> list[tuple[str, Any]]:
    """The routes under ``/governance/api/`` (relative to the server's base URL)."""
    return [(rf"{API_PREFIX}/health/?", HealthHandler)]
