"""The OpenAPI document of the governance API, generated from the routes and their body schemas.

Generated rather than hand-written so it cannot drift from what the handlers accept:
``python -m governed_server.openapi > docs/openapi.json`` (a test checks the committed file).
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

from tornado.web import RequestHandler
from tornado.websocket import WebSocketHandler

from governed_kernel._version import __version__
from governed_server.service.handlers import default_handlers
from governed_server.service.handlers.base import KernelHandler

METHODS = ("get", "post", "put", "patch", "delete")
ERROR_STATUSES = {
    "400": "Malformed input: the message names the field and the problem",
    "401": "No credential, or the wrong kind of credential for this endpoint",
    "403": "Authenticated, but not allowed (role, ownership, revoked credential)",
    "404": "No such request",
    "409": "The request is no longer in a state that allows this (decided, expired, used)",
    "503": "The governance service is not running (policy or store unusable); the message says why",
}


def _openapi_path(pattern: str) -> str:
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern).removesuffix("/?")
    return path


def _summary(handler: type[RequestHandler], method: str) -> tuple[str, str]:
    own = getattr(handler, method).__doc__ or handler.__dict__.get("__doc__") or ""
    doc = inspect.cleandoc(own)
    first, _, rest = doc.partition("\n")
    return first.strip(), rest.strip()


def _websocket_operation(handler: type[RequestHandler]) -> dict[str, Any]:
    """OpenAPI describes the upgrade request only; the messages are in the description."""
    summary, description = _summary(handler, "get")
    return {
        "summary": summary,
        "description": (description + "\n\n" if description else "")
        + "A WebSocket: JSON messages `{id, records}` in (the schema of `POST /kernel/audit`), "
        "`{id, status, records | message}` out. Protocol and statuses: docs/service.md.",
        "tags": ["kernel"],
        "security": [{"kernelCredential": []}],
        "responses": {
            "101": {"description": "Switching Protocols: the audit stream is open"},
            **{status: {"description": ERROR_STATUSES[status]} for status in ("400", "401", "403", "503")},
        },
    }


def build() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for pattern, handler in default_handlers():
        path = _openapi_path(pattern)
        if issubclass(handler, WebSocketHandler):
            paths[path] = {"get": _websocket_operation(handler)}
            continue
        item: dict[str, Any] = {}
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", path)
        ]
        for method in METHODS:
            if getattr(handler, method) is getattr(RequestHandler, method):
                continue
            summary, description = _summary(handler, method)
            kernel = issubclass(handler, KernelHandler)
            operation: dict[str, Any] = {
                "summary": summary,
                "tags": ["kernel" if kernel else "people"],
                "security": [{"kernelCredential": []}] if kernel else [{"jupyterToken": []}],
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **{
                        status: {
                            "description": text,
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                            },
                        }
                        for status, text in ERROR_STATUSES.items()
                    },
                },
            }
            if description:
                operation["description"] = description
            if parameters:
                operation["parameters"] = parameters
            schema = handler.body_schemas.get(method) if hasattr(handler, "body_schemas") else None
            if schema is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": schema}},
                }
            item[method] = operation
        paths[path] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "governed-kernel governance API",
            "version": __version__,
            "description": "Approvals, audit and health of the governed Jupyter kernel. Served by the "
            "governed_server extension inside jupyter_server, or standalone by `jupyter governance serve`. "
            "Paths are relative to the server's base URL.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "jupyterToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`token <your Jupyter token>`, or the server's login cookie with XSRF",
                },
                "kernelCredential": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`GovernedKernel <token>`: minted by the server for one kernel",
                },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["status", "message"],
                    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
                }
            },
        },
    }


def main() -> None:
    print(json.dumps(build(), indent=2, sort_keys=False))


if __name__ == "__main__":
    main()
