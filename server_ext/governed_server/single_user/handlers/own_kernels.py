"""jupyter_server's kernel and session routes, refusing a kernel another person started.

The rule lives in :mod:`governed_server.single_user.ownership`, in the kernel and session managers; these
subclasses add it where a route reaches a kernel without those managers' checked methods (a
kernel's model, its websocket) and answer 403 with the reason before a session is created on, or
moved to, another person's kernel (the managers refuse that too, but the sessions route would
report it as a 500).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.services.kernels.handlers import (
    KernelActionHandler,
    KernelHandler,
    _kernel_action_regex,
    _kernel_id_regex,
)
from jupyter_server.services.kernels.websocket import KernelWebsocketHandler
from jupyter_server.services.sessions.handlers import SessionHandler, SessionRootHandler, _session_id_regex
from tornado import web

from governed_server.single_user.ownership import KernelOwners


async def _finish(result: Any) -> None:
    """Await what a parent's handler method returned (tornado types them as maybe-awaitable)."""
    if result is not None:
        await result


def _refuse_others(handler: web.RequestHandler, kernel_id: str | None) -> None:
    """403 when the request may not use ``kernel_id`` (see :meth:`KernelOwners.check`)."""
    owners: KernelOwners | None = getattr(handler.settings.get("kernel_manager"), "kernel_owners", None)
    if owners is not None:
        owners.check(kernel_id)


def _requested_kernel(body: Any) -> str | None:
    kernel = body.get("kernel") if isinstance(body, dict) else None
    kernel_id = kernel.get("id") if isinstance(kernel, dict) else None
    return str(kernel_id) if kernel_id else None


class OwnKernelHandler(KernelHandler):
    """``GET /api/kernels/{id}``: the model of your own kernels only (DELETE is checked by the manager)."""

    @web.authenticated
    @authorized
    async def get(self, kernel_id: str) -> None:
        _refuse_others(self, kernel_id)
        await _finish(super().get(kernel_id))


class OwnKernelActionHandler(KernelActionHandler):
    """``POST /api/kernels/{id}/interrupt|restart``: 403 for another person's kernel (not a 500)."""

    @web.authenticated
    @authorized
    async def post(self, kernel_id: str, action: str) -> None:
        _refuse_others(self, kernel_id)
        await _finish(super().post(kernel_id, action))


class OwnKernelWebsocketHandler(KernelWebsocketHandler):
    """``/api/kernels/{id}/channels``: only the person who started the kernel may connect to it."""

    async def pre_get(self) -> None:
        _refuse_others(self, self.kernel_id)
        await super().pre_get()  # type: ignore[no-untyped-call]


class OwnSessionRootHandler(SessionRootHandler):
    """``POST /api/sessions`` naming another person's kernel: 403 with the reason."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        _refuse_others(self, _requested_kernel(self.get_json_body()))
        await _finish(super().post())


class OwnSessionHandler(SessionHandler):
    """``PATCH /api/sessions/{id}`` moving the session onto another person's kernel: 403."""

    @web.authenticated
    @authorized
    async def patch(self, session_id: str) -> None:
        _refuse_others(self, _requested_kernel(self.get_json_body()))
        await _finish(super().patch(session_id))


def ownership_handlers() -> list[tuple[str, Any]]:
    """Routes with jupyter_server's own patterns: an extension's handlers are matched first."""
    return [
        (rf"/api/kernels/{_kernel_id_regex}", OwnKernelHandler),
        (rf"/api/kernels/{_kernel_id_regex}/{_kernel_action_regex}", OwnKernelActionHandler),
        (rf"/api/kernels/{_kernel_id_regex}/channels", OwnKernelWebsocketHandler),
        (r"/api/sessions", OwnSessionRootHandler),
        (rf"/api/sessions/{_session_id_regex}", OwnSessionHandler),
    ]
