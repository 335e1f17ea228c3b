"""``GET /me``: who the API thinks you are and which governance roles you hold (for the UI)."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from governed_server.service.handlers.base import GovernanceHandler


class MeHandler(GovernanceHandler):
    """``GET /me``: your username, groups, governance roles and the policy in force."""

    @web.authenticated
    @authorized
    def get(self) -> None:
        person = self.person()
        service = self.service
        self.reply(
            {
                "username": person.username,
                "display_name": person.display_name,
                "groups": sorted(person.groups),
                "roles": service.roles.roles_of(person),
                # Under JupyterHub: roles the policy gives you that your token's scopes do not carry.
                "hub_scopes_missing": service.roles.missing_scopes(person),
                "policy": {
                    "name": service.policy.name,
                    "version": service.policy.version,
                    "mode": service.policy.mode,
                    "required_approvers": service.policy.approvals.required_approvers,
                },
            }
        )
