"""Client mode: the service's governance events, relayed into this server's own event bus.

The side panel listens to its own server's ``/api/events/subscribe``; the events happen at the
shared service. The relay subscribes to the service's ``/governance/api/events`` with the token of
the person using this server (the one the panel's relayed calls carry: an approver's token sees
every request, an analyst's only their own), and emits each event here again. It starts at the
first relayed call, follows the newest token, and reconnects with a growing pause when the service
goes away; the panel's slow poll covers the gaps.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

log = logging.getLogger("governed_server")
MAX_PAUSE_S = 30.0


class EventRelay:
    def __init__(self, ws_url: str, event_logger: Any) -> None:
        self.ws_url = ws_url
        self.event_logger = event_logger
        self.token = ""
        self.task: asyncio.Task[None] | None = None
        self.connection: Any = None

    def token_seen(self, token: str) -> None:
        """A relayed call carried ``token``: (re)subscribe with it if it is new."""
        if token == self.token and self.task is not None and not self.task.done():
            return
        self.token = token
        if self.connection is not None:
            self.connection.close()  # the loop reconnects with the new token
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        pause = 1.0
        while self.token:
            request = HTTPRequest(self.ws_url, headers={"Authorization": f"token {self.token}"})
            try:
                self.connection = await websocket_connect(request)
                pause = 1.0
                while True:
                    raw = await self.connection.read_message()
                    if raw is None:
                        break
                    self.emit(raw)
            except Exception as error:  # refused, unreachable: try again later
                log.info("governed_server: the service's event stream is not available: %s", error)
            finally:
                self.connection = None
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE_S)

    def emit(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
            self.event_logger.emit(schema_id=message["schema_id"], data=message["data"])
        except Exception:
            log.exception("governed_server: could not relay a governance event")

    def close(self) -> None:
        self.token = ""
        if self.connection is not None:
            self.connection.close()
        if self.task is not None:
            self.task.cancel()
