"""Approval endpoints for people: list, read, decide, cancel."""

from __future__ import annotations

from typing import Any, ClassVar

from jupyter_server.auth.decorator import authorized
from tornado import web

from governed_server.offload import offload
from governed_server.service.handlers.base import GovernanceHandler
from governed_server.service.handlers.schemas import DECISION, EMPTY


class ApprovalListHandler(GovernanceHandler):
    """``GET /approvals?status=&requester=&mine=1``: approvers and auditors see all, others their own."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        person = self.person()
        service = self.service
        requester = self.get_query_argument("requester", None)
        mine = self.get_query_argument("mine", "") in ("1", "true", "yes")
        sees_all = service.roles.has_role(person, "approver") or service.roles.has_role(person, "auditor")
        if mine or not sees_all:
            if requester not in (None, person.username):
                self.fail(403, "only approvers and auditors can list other users' requests")
            requester = person.username
        views = await offload(
            service.approvals.search,
            status=self.get_query_argument("status", None),
            requester=requester,
            limit=self.query_int("limit", 200, 1, 1000),
        )
        self.reply({"requests": [view.to_json() for view in views]})


class ApprovalHandler(GovernanceHandler):
    """``GET /approvals/{id}``."""

    @web.authenticated
    @authorized
    async def get(self, request_id: str) -> None:
        person = self.person()
        view = await offload(self.service.approvals.get, request_id)
        if view.requester != person.username:
            self.require_role(person, "approver", "auditor")
        self.reply(view.to_json())


class ApprovalDecisionHandler(GovernanceHandler):
    """``POST /approvals/{id}/decision`` with ``{"decision": "approve"|"deny", "reason": "..."}``."""

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"post": DECISION}

    @web.authenticated
    @authorized
    async def post(self, request_id: str) -> None:
        body = self.json_body()
        service = self.service
        view = await offload(
            service.approvals.decide, self.person(), request_id, body["decision"], body["reason"]
        )
        event = "approval.decided" if view.status != "pending" else "approval.endorsed"
        service.announce(event, view, self.person().username)
        self.reply(view.to_json())


class ApprovalCancelHandler(GovernanceHandler):
    """``POST /approvals/{id}/cancel``: the requester withdraws a pending request."""

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"post": EMPTY}

    @web.authenticated
    @authorized
    async def post(self, request_id: str) -> None:
        self.json_body()
        service = self.service
        view = await offload(service.approvals.cancel, self.person(), request_id)
        service.announce("approval.cancelled", view, view.requester)
        self.reply(view.to_json())
