"""An identity provider that maps configured tokens to named users, for demos and small teams.

jupyter_server's default provider knows one token and gives its holder a random anonymous name, so
an approval queue could not tell an analyst from an approver. This provider keeps that behaviour for
the server's own token and adds named users::

    c.ServerApp.identity_provider_class = "governed_server.identity_provider.NamedTokenIdentityProvider"
    c.NamedTokenIdentityProvider.users = {
        "<analyst token>": {"username": "ana", "display_name": "Ana (analyst)"},
        "<approver token>": "bob",
    }

Under JupyterHub use the Hub's identities instead.
"""

from __future__ import annotations

import hmac
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User
from tornado import web
from traitlets import Dict, Unicode, Union


class NamedTokenIdentityProvider(IdentityProvider):
    """Token → named user, on top of the server's own token (which keeps its anonymous user)."""

    users = Dict(
        key_trait=Unicode(),
        value_trait=Union([Unicode(), Dict()]),
        help="Token → username, or token → {username, display_name}. Tokens should be long and random.",
    ).tag(config=True)

    def user_for_token(self, token: str) -> User | None:
        """The named user a token belongs to (constant-time comparison), or None."""
        found: User | None = None
        for candidate, entry in self.users.items():
            if token and hmac.compare_digest(candidate.encode(), token.encode()):
                found = self._user(entry)
        return found

    def is_named(self, username: str) -> bool:
        """Whether ``username`` is one of the configured people (not a holder of the server's token)."""
        return any(self._user(entry).username == username for entry in self.users.values())

    async def get_user_token(self, handler: web.RequestHandler) -> User | None:
        named = self.user_for_token(self.get_token(handler) or "")
        if named is not None:
            return named
        user: User | None = await super().get_user_token(handler)
        return user

    @staticmethod
    def _user(entry: Any) -> User:
        if isinstance(entry, str):
            return User(username=entry, name=entry, display_name=entry)
        username = str(entry["username"])
        display = str(entry.get("display_name") or username)
        return User(username=username, name=display, display_name=display)
