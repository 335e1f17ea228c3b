"""Base class of every governance handler: authenticated, authorized, JSON in and out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin

if TYPE_CHECKING:
    from governed_server.app import GovernedServerApp

AUTH_RESOURCE = "governance"
"""The resource name that jupyter_server authorizers see for every governance endpoint."""


class GovernanceHandler(ExtensionHandlerMixin, APIHandler):
    """Base of every governance endpoint; each method carries ``@web.authenticated`` and ``@authorized``."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, name: str = "governed_server", *args: Any, **kwargs: Any) -> None:
        super().initialize(name, *args, **kwargs)

    @property
    def governance(self) -> GovernedServerApp:
        app: GovernedServerApp = self.settings["governed_server"]
        return app

    def username(self) -> str:
        user = self.current_user
        return str(getattr(user, "username", user))
