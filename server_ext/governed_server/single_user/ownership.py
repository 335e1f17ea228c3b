"""Who may work in which kernel: each person in the kernels they started, unless the policy shares them.

jupyter_server keys sessions by notebook path, so a second person who opens the same notebook is
attached to the first person's kernel: their cells would run in it, be recorded as the owner's, and
their gated cells would become the owner's requests (which they could then approve). The server
therefore remembers who started each kernel, and the session and kernel endpoints (see
:mod:`governed_server.single_user.handlers.own_kernels`) and the kernel websocket show and serve a person only
their own kernels. ``sessions.share_kernels: true`` in the policy turns this off.

Everyone who holds the server's own token is one person (jupyter_server gives each of their logins a
random "Anonymous" name, but they all hold the same secret): a plain ``jupyter lab`` behaves as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from jupyter_server.base.call_context import CallContext
from tornado import web

from governed_server.single_user.patching import original

SERVER_OWNER = "token:server"
"""The principal of whoever holds the server's own token (and of kernels started without a request)."""

_ANONYMOUS_ID = re.compile(r"[0-9a-f]{32}")


def principal(user: Any, named: Callable[[str], bool] | None = None) -> str:
    """The key two requests must share to use the same kernel.

    ``named``: the identity provider's answer to "is this a named user?" when it knows
    (:class:`~governed_server.identity_provider.NamedTokenIdentityProvider`); otherwise a user that
    looks like jupyter_server's generated anonymous user is the server's token holder.
    """
    username = str(getattr(user, "username", "") or "")
    if not username:
        return SERVER_OWNER
    if named is not None:
        return f"user:{username}" if named(username) else SERVER_OWNER
    display = str(getattr(user, "name", "") or "")
    if _ANONYMOUS_ID.fullmatch(username) and display.startswith("Anonymous "):
        return SERVER_OWNER
    return f"user:{username}"


class KernelOwners:
    """Kernel id → the principal that started it (kept for the kernel's life, restarts included)."""

    def __init__(self, named: Callable[[str], bool] | None = None) -> None:
        self._owners: dict[str, str] = {}
        self._named = named
        self.share_kernels: Callable[[], bool] = lambda: False

    def principal(self, user: Any) -> str:
        return principal(user, self._named)

    def claim(self, kernel_id: str, user: Any) -> str:
        """Record who started ``kernel_id`` (the first claim wins) and return its owner."""
        return self._owners.setdefault(kernel_id, self.principal(user))

    def owner(self, kernel_id: str) -> str:
        """The kernel's owner; a kernel the server did not see start belongs to the server's owner."""
        return self._owners.get(kernel_id, SERVER_OWNER)

    def may_use(self, user: Any, kernel_id: str | None) -> bool:
        if kernel_id is None or self.share_kernels():
            return True
        return self.owner(kernel_id) == self.principal(user)

    def refusal(self, kernel_id: str) -> web.HTTPError:
        return web.HTTPError(
            403,
            f"kernel {kernel_id} was started by another person, and the governance policy does not share "
            "kernels (sessions.share_kernels): open the notebook to get a kernel of your own",
        )

    def check(self, kernel_id: str | None) -> None:
        """Refuse (403) when the request being handled may not use ``kernel_id``; no-op outside one."""
        user = requesting_user()
        if user is not None and kernel_id is not None and not self.may_use(user, kernel_id):
            raise self.refusal(kernel_id)

    def mine(self, kernel_id: str | None) -> bool:
        user = requesting_user()
        return user is None or self.may_use(user, kernel_id)

    def install(self, kernel_manager: Any, session_manager: Any) -> None:
        """Enforce ownership in the server's kernel and session managers, whichever route calls them:
        the kernel's owner is the user of the request that started it; within a request, listings show
        the requester's kernels and sessions only, and acting on another's kernel is refused. Calls
        outside a request (the server's own housekeeping: culling, shutdown) are not restricted."""
        if getattr(kernel_manager, "kernel_owners", None) is self:
            return
        kernel_manager.kernel_owners = self
        km_start, km_list = original(kernel_manager, "start_kernel"), original(kernel_manager, "list_kernels")
        sm_list, sm_get = original(session_manager, "list_sessions"), original(session_manager, "get_session")
        sm_exists = original(session_manager, "session_exists")
        sm_create = original(session_manager, "create_session")
        sm_update = original(session_manager, "update_session")

        async def start_kernel(*args: Any, **kwargs: Any) -> str:
            self.check(kwargs.get("kernel_id"))  # attaching to a running kernel by id
            kernel_id = str(await km_start(*args, **kwargs))
            self.claim(kernel_id, requesting_user())
            return kernel_id

        def list_kernels() -> list[dict[str, Any]]:
            return [model for model in km_list() if self.mine(model.get("id"))]

        def checked(method: Callable[..., Any]) -> Callable[..., Any]:
            def call(kernel_id: str, *args: Any, **kwargs: Any) -> Any:
                self.check(kernel_id)
                return method(kernel_id, *args, **kwargs)

            return call

        async def list_sessions() -> list[dict[str, Any]]:
            return [model for model in await sm_list() if self.mine(_kernel_of(model))]

        async def get_session(**kwargs: Any) -> dict[str, Any]:
            model: dict[str, Any] = await sm_get(**kwargs)
            if self.mine(_kernel_of(model)):
                return model
            if set(kwargs) == {"path"}:  # the first session at this path is another person's
                for session in await list_sessions():
                    if session["path"] == kwargs["path"]:
                        return session
                raise web.HTTPError(404, f"Session not found: path={kwargs['path']!r}")
            raise self.refusal(str(_kernel_of(model)))

        async def session_exists(path: str) -> bool:
            if requesting_user() is None:
                return bool(await sm_exists(path))
            return any(session["path"] == path for session in await list_sessions())

        async def create_session(*args: Any, **kwargs: Any) -> Any:
            self.check(kwargs.get("kernel_id"))  # a new session on a running kernel
            return await sm_create(*args, **kwargs)

        async def update_session(session_id: str, **kwargs: Any) -> Any:
            self.check(kwargs.get("kernel_id"))  # moving a session onto a running kernel
            return await sm_update(session_id, **kwargs)

        kernel_manager.start_kernel = start_kernel
        kernel_manager.list_kernels = list_kernels
        for name in ("shutdown_kernel", "interrupt_kernel", "restart_kernel"):
            setattr(kernel_manager, name, checked(original(kernel_manager, name)))
        session_manager.list_sessions = list_sessions
        session_manager.get_session = get_session
        session_manager.session_exists = session_exists
        session_manager.create_session = create_session
        session_manager.update_session = update_session


def _kernel_of(session: dict[str, Any]) -> str | None:
    kernel = session.get("kernel")
    return str(kernel["id"]) if isinstance(kernel, dict) and kernel.get("id") else None


def requesting_user() -> Any:
    """The user of the HTTP request being handled (None outside a request)."""
    handler = CallContext.get(CallContext.JUPYTER_HANDLER)
    return getattr(handler, "current_user", None) if handler is not None else None
