"""Audit endpoints for auditors: query (itself recorded, PCI DSS 10.2.1.3) and verify."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from governed_server.audit_records import AuditEvent
from governed_server.offload import offload
from governed_server.service.handlers.base import GovernanceHandler

FILTERS = ("user", "event_type", "kernel_id", "notebook")


class AuditQueryHandler(GovernanceHandler):
    """``GET /audit?user=&event_type=&kernel_id=&notebook=&since=&until=&after_seq=&limit=``."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        person = self.person()
        self.require_role(person, "auditor")
        filters: dict[str, Any] = {name: self.get_query_argument(name, None) for name in FILTERS}
        for name in ("since", "until"):
            raw = self.get_query_argument(name, None)
            if raw:
                try:
                    filters[name] = datetime.fromisoformat(raw.replace("Z", "+00:00"))
                except ValueError:
                    self.fail(400, f"query parameter {name!r} must be an ISO 8601 time")
        after_seq = self.get_query_argument("after_seq", None)
        limit = self.query_int("limit", 100, 1, 1000)
        service = self.service
        shown = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in filters.items()}
        # Reading the audit log is itself an audit event, written before the answer leaves.
        await offload(
            service.audit.append,
            [
                AuditEvent(
                    event_type="audit.read",
                    user=person.username,
                    client_addr=self.request.remote_ip or "",
                    server=service.settings.server_id,
                    details={"filters": shown, "limit": limit},
                )
            ],
        )
        records = await offload(
            service.audit.query,
            **filters,
            limit=limit,
            after_seq=self.query_int("after_seq", 0, 0, 2**62) if after_seq is not None else None,
        )
        self.reply({"records": [record.to_dict() for record in records]})


class AuditVerifyHandler(GovernanceHandler):
    """``GET /audit/verify``: recompute the chain and check it against the signed checkpoints."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        person = self.person()
        self.require_role(person, "auditor")
        report = await offload(self.service.audit.verify)
        self.service.report_integrity(report)
        self.reply(report.to_dict())
