"""Client mode: ``/governance/api/…`` of a single-user server, relayed to the shared service.

The Lab side panel calls its own server (same origin, its XSRF cookie); a direct call from the page
to ``/services/governance/`` would carry neither. This relay authenticates the caller as the
single-user server does (Hub OAuth), then calls the service with *that caller's own* Hub token, so
the service sees the person, their groups and their token's scopes: the relay adds no authority.
"""

from __future__ import annotations

from typing import Any

import httpx
from jupyter_server.base.handlers import APIHandler
from tornado import web

API_PREFIX = "/governance/api"
RELAYED_HEADERS = ("Content-Type",)
TIMEOUT_S = 30.0
_client: httpx.AsyncClient | None = None


def _http() -> httpx.AsyncClient:
    global _client
    if _client is None:
        _client = httpx.AsyncClient(timeout=TIMEOUT_S)
    return _client


class ServiceRelayHandler(APIHandler):
    """Every method of ``/governance/api/<path>``: the same call at the service, as the caller."""

    def _caller_token(self) -> str | None:
        hub_auth = getattr(self.identity_provider, "hub_auth", None)
        if hub_auth is None:
            return None
        token = hub_auth.get_token(self)
        return str(token) if token else None

    async def _relay(self, path: str) -> None:
        app = self.settings["governed_server"]
        token = self._caller_token()
        if token is None:
            raise web.HTTPError(401, "no Hub token for this request: log in through JupyterHub")
        if app.event_relay is not None:
            app.event_relay.token_seen(token)
        url = app.service_api_url() + path
        query = {name: [v.decode() for v in values] for name, values in self.request.query_arguments.items()}
        headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
        try:
            answer = await _http().request(
                self.request.method or "GET",
                url,
                params=query,
                content=self.request.body or None,
                headers=headers,
            )
        except httpx.HTTPError as error:
            self.set_status(503)
            self.finish({"status": 503, "message": f"the governance service is not reachable: {error}"})
            return
        self.set_status(answer.status_code)
        for name in RELAYED_HEADERS:
            if name in answer.headers:
                self.set_header(name, answer.headers[name])
        self.finish(answer.content)

    @web.authenticated
    async def get(self, path: str) -> None:
        await self._relay(path)

    @web.authenticated
    async def post(self, path: str) -> None:
        await self._relay(path)

    @web.authenticated
    async def put(self, path: str) -> None:
        await self._relay(path)

    @web.authenticated
    async def delete(self, path: str) -> None:
        await self._relay(path)


def proxy_handlers() -> list[tuple[str, Any]]:
    return [(rf"{API_PREFIX}/(?P<path>.*)", ServiceRelayHandler)]
