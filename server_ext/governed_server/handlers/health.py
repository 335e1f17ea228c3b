"""``GET /governance/api/health``: is the governance service up, and what is it configured with."""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from tornado import web

from governed_kernel import KERNEL_NAME
from governed_kernel._version import __version__
from governed_server.handlers.base import GovernanceHandler
from governed_server.paths import redact_db_url


class HealthHandler(GovernanceHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        app = self.governance
        self.finish(
            json.dumps(
                {
                    "status": "ok",
                    "version": __version__,
                    "kernel_name": KERNEL_NAME,
                    "policy_path": str(app.policy_file),
                    "policy_exists": app.policy_file.is_file(),
                    "store": redact_db_url(app.db_url),
                    "user": self.username(),
                    "user_display_name": getattr(self.current_user, "display_name", self.username()),
                }
            )
        )
