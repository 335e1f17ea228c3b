"""Kernel provisioner of ``governed-python``: gives each kernel started by a Jupyter server its own
credential for the governance API, and revokes it when the kernel goes away.

Declared in the kernelspec (``metadata.kernel_provisioner``). Inside jupyter_server the chain
``KernelManager → MappingKernelManager → ServerApp`` leads to the ``governed_server`` extension,
which mints the credential. The user is the one whose request started the kernel (jupyter_server's
``CallContext``); a restart keeps the kernel's first user. Outside a server (nbclient, papermill) there
is nothing to mint: the kernel then needs ``GOVERNED_SERVICE_URL`` and a credential from its
environment, and refuses governed work without them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner

if TYPE_CHECKING:
    from governed_server.app import GovernedServerApp

log = logging.getLogger("governed_server")
_KERNEL_USERS: dict[str, str] = {}
"""kernel id → the user it was first started for (restarts keep it)."""


def _governance_app(provisioner: LocalProvisioner) -> GovernedServerApp | None:
    node: Any = provisioner.parent
    for _ in range(4):
        if node is None:
            return None
        web_app = getattr(node, "web_app", None)
        if web_app is not None:
            app: GovernedServerApp | None = web_app.settings.get("governed_server")
            return app
        node = getattr(node, "parent", None)
    return None


def _requesting_user(app: GovernedServerApp) -> str:
    from jupyter_server.base.call_context import CallContext

    handler = CallContext.get(CallContext.JUPYTER_HANDLER)
    user = getattr(handler, "current_user", None) if handler is not None else None
    username = getattr(user, "username", None)
    return str(username) if username else app.kernel_user


class GovernedProvisioner(LocalProvisioner):
    """A local provisioner that injects ``GOVERNED_SERVICE_URL`` and a per-kernel credential."""

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs = await super().pre_launch(**kwargs)
        app = _governance_app(self)
        if app is None or self.kernel_id is None:
            return kwargs
        kernel_id = str(self.kernel_id)
        username = _KERNEL_USERS.setdefault(kernel_id, _requesting_user(app))
        env = dict(kwargs.get("env") or {})
        env.update(app.kernel_environment(kernel_id, username))
        kwargs["env"] = env
        return kwargs

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        if restart or self.kernel_id is None:
            return
        kernel_id = str(self.kernel_id)
        _KERNEL_USERS.pop(kernel_id, None)
        app = _governance_app(self)
        if app is not None:
            try:
                app.revoke_kernel(kernel_id)
            except Exception:
                log.exception("governed_server: could not revoke the credential of kernel %s", kernel_id)
