"""``GET /governance/api/events`` (WebSocket): the governance events a person may see, pushed.

jupyter_server's own ``/api/events/subscribe`` sends every event to every subscriber; on a shared
service that would tell each analyst whose requests are pending on which notebooks. This stream
sends approvers and auditors everything, and anyone else only the events about themselves (their
requests, their cells). A single-user server in client mode relays it into its own event bus, so the
side panel gets push updates with no per-user setup (``remote_events``).
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from tornado import web, websocket

from governed_server.events import APPROVAL_SCHEMA, CELL_SCHEMA, INTEGRITY_SCHEMA
from governed_server.service.handlers.base import AUTH_RESOURCE

SUBJECT_FIELDS = {APPROVAL_SCHEMA: "requester", CELL_SCHEMA: "user"}
"""Whom an event is about, per schema; integrity events are for approvers and auditors only."""


def visible(schema_id: str, data: dict[str, Any], username: str, sees_all: bool) -> bool:
    if schema_id not in (APPROVAL_SCHEMA, CELL_SCHEMA, INTEGRITY_SCHEMA):
        return False
    if sees_all:
        return True
    field = SUBJECT_FIELDS.get(schema_id)
    return field is not None and data.get(field) == username


class GovernanceEventsHandler(JupyterHandler, websocket.WebSocketHandler):
    """Each connection: one person's view of the event bus (see the module)."""

    username = ""
    sees_all = False
    bus: Any = None

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        authorized = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)
        )
        if not authorized:
            raise web.HTTPError(403, "not authorized for the governance API")
        app = self.settings["governed_server"]
        service = app.service
        if service is None or getattr(service, "remote", False):
            raise web.HTTPError(503, "the governance service is not running here")
        person = service.roles.person(self.current_user)
        self.username = person.username
        self.sees_all = service.roles.has_role(person, "approver") or service.roles.has_role(
            person, "auditor"
        )
        self.bus = service.event_logger
        result = super().get(*args, **kwargs)
        if result is not None:
            await result

    async def event_listener(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        if not visible(schema_id, dict(data), self.username, self.sees_all):
            return
        try:
            self.write_message(json.dumps({"schema_id": schema_id, "data": dict(data)}, default=str))
        except websocket.WebSocketClosedError:
            self.bus.remove_listener(listener=self.event_listener)

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.bus.add_listener(listener=self.event_listener)

    def on_close(self) -> None:
        if getattr(self, "bus", None) is not None:
            self.bus.remove_listener(listener=self.event_listener)
