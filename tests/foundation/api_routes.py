"""Every route of the governance API, for tests that must cover all of them."""

from __future__ import annotations

import re
from typing import Any

from tornado.web import RequestHandler

from governed_server.service.handlers import default_handlers


def get_routes() -> list[tuple[str, str]]:
    """Every (method, route) of the API, routes as concrete paths (ids filled in)."""
    return [
        (method.upper(), concrete_path(pattern))
        for pattern, handler in default_handlers()
        for method in ("get", "post", "put", "patch", "delete")
        if getattr(handler, method) is not getattr(RequestHandler, method)
    ]


async def fetch(jp_fetch: Any, method: str, route: str, **kwargs: Any) -> Any:
    body = {"body": "{}"} if method in ("POST", "PUT", "PATCH") else {}
    return await jp_fetch(*route.split("/"), method=method, **body, **kwargs)


def concrete_path(pattern: str) -> str:
    return (
        re.sub(r"\(\?P<\w+>[^)]*\)", "00000000-0000-4000-8000-000000000000", pattern)
        .removesuffix("/?")
        .lstrip("/")
    )
