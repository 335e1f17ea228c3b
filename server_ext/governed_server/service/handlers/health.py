"""``GET /governance/api/health``: is the governance service up, and what is it configured with."""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from governed_kernel import KERNEL_NAME
from governed_kernel._version import __version__
from governed_server.offload import offload
from governed_server.paths import redact_db_url
from governed_server.service.handlers.base import GovernanceHandler
from governed_server.service.store_health import probe


class HealthHandler(GovernanceHandler):
    """``GET /health``: version, policy, store and kernel jail in use; ``status: unavailable`` with the
    reason if not."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        app = self.governance
        service = app.service
        username = str(getattr(self.current_user, "username", self.current_user))
        store_state: dict[str, Any] | None = None
        status = "unavailable"
        problem = app.unavailable_reason if service is None else None
        if service is not None:
            interval = service.policy.audit.checkpoint_interval_minutes
            health = await offload(probe, service.store, interval)
            store_state = health.to_json()
            status = "ok" if health.state == "ok" and not health.checkpoint_overdue else "degraded"
            if health.problem:
                problem = health.problem
            elif health.checkpoint_overdue:
                problem = f"{health.unsealed_records} audit records are not sealed by a checkpoint yet"
        self.reply(
            {
                "status": status,
                "problem": problem,
                "store_state": store_state,
                "version": __version__,
                "kernel_name": KERNEL_NAME,
                "policy_path": str(app.policy_file),
                "policy_exists": app.policy_file.is_file(),
                "policy_version": service.policy.version if service is not None else None,
                "mode": service.policy.mode if service is not None else None,
                "store": redact_db_url(app.db_url),
                **app.jail_report(),
                **app.hardening_report(),
                "roles": app.roles_rule(),
                "user": username,
                "user_display_name": getattr(self.current_user, "display_name", username),
            }
        )
