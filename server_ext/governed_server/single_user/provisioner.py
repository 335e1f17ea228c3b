"""Kernel provisioner of ``governed-python``: starts each kernel of a Jupyter server in the kernel jail,
with its own credential for the governance API, and revokes it when the kernel goes away.

Declared in the kernelspec (``metadata.kernel_provisioner``). Inside jupyter_server the chain
``KernelManager → MappingKernelManager → ServerApp`` leads to the ``governed_server`` extension,
which mints the credential and holds the jail (:class:`~governed_server.single_user.kernel_jail.KernelJail`:
what the kernel sees, its environment, when it must not start). The user is the one whose request
started the kernel (jupyter_server's ``CallContext``); a restart keeps the kernel's first user.

Each kernel gets a directory of its own (0700) for its connection file and IPC sockets (0600):
its channels never listen on TCP, and nothing else of the runtime dir is in its jail.

Outside a server (nbclient, papermill) there is nothing to mint and no jail: the kernel then needs
``GOVERNED_SERVICE_URL`` and a credential from its environment, and refuses governed work without them.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from tornado import web

from governed_server.single_user.kernel_jail import IPC_BASENAME, JailRefused, KernelJail

log = logging.getLogger("governed_server")
_KERNEL_USERS: dict[str, str] = {}
"""kernel id → the user it was first started for (restarts keep it)."""
CONNECTION_FILE_NAME = "kernel.json"


class KernelNotStarted(web.HTTPError):
    """The server refuses to start a governed kernel; the message says why and what to do (HTTP 503)."""

    def __init__(self, message: str) -> None:
        # tornado %-formats log_message when it logs: no stray '%' (from a tool's error text).
        super().__init__(
            503, log_message=message.replace("%", " percent"), reason="Governed kernel not started"
        )


class KernelHost(Protocol):
    """What the provisioner needs of the extension running in its server (``settings["governed_server"]``)."""

    kernel_jail: KernelJail | None
    kernel_user: str

    def policy_mode(self) -> str: ...
    def kernel_environment(self, kernel_id: str, username: str) -> dict[str, str]: ...
    def kernel_env_names(self) -> list[str]: ...
    def revoke_kernel(self, kernel_id: str) -> None: ...


def _governance_app(provisioner: LocalProvisioner) -> KernelHost | None:
    node: Any = provisioner.parent
    for _ in range(4):
        if node is None:
            return None
        web_app = getattr(node, "web_app", None)
        if web_app is not None:
            app: KernelHost | None = web_app.settings.get("governed_server")
            return app
        node = getattr(node, "parent", None)
    return None


def _requesting_user(app: KernelHost) -> str:
    from jupyter_server.base.call_context import CallContext

    handler = CallContext.get(CallContext.JUPYTER_HANDLER)
    user = getattr(handler, "current_user", None) if handler is not None else None
    username = getattr(user, "username", None)
    return str(username) if username else app.kernel_user


class GovernedProvisioner(LocalProvisioner):
    """A local provisioner that jails the kernel and injects ``GOVERNED_SERVICE_URL`` and a credential."""

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        app = _governance_app(self)
        jail = app.kernel_jail if app is not None else None
        if app is None or jail is None or self.kernel_id is None:
            return await super().pre_launch(**kwargs)
        problem = jail.refusal(app.policy_mode())
        if problem is not None:
            raise KernelNotStarted(problem)
        kernel_id = str(self.kernel_id)
        try:
            kernel_dir = jail.prepare_kernel_dir(kernel_id)
        except (JailRefused, OSError) as error:
            raise KernelNotStarted(f"Governed kernel not started: {error}") from None
        km: Any = self.parent
        # Before the connection file is written (the base class writes it, once per kernel).
        if km is not None and not getattr(km, "_connection_file_written", False):
            km.transport = "ipc"
            km.cache_ports = False
            km.connection_file = str(kernel_dir / CONNECTION_FILE_NAME)
            km.ip = str(kernel_dir / IPC_BASENAME)
        kwargs = await super().pre_launch(**kwargs)
        username = _KERNEL_USERS.setdefault(kernel_id, _requesting_user(app))
        env = dict(kwargs.get("env") or {})
        env.update(app.kernel_environment(kernel_id, username))
        spec_env = getattr(self.kernel_spec, "env", None) or {}
        launch = jail.launch(
            kwargs["cmd"], env, kernel_dir=kernel_dir, cwd=kwargs.get("cwd"),
            env_names=[*spec_env, *app.kernel_env_names()],
        )  # fmt: skip
        log.debug("governed_server: kernel %s starts %s", kernel_id, launch.cmd)
        kwargs.update(launch.extra_popen)
        kwargs["cmd"] = launch.cmd
        kwargs["env"] = launch.env
        return kwargs

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        if restart or self.kernel_id is None:
            return
        kernel_id = str(self.kernel_id)
        _KERNEL_USERS.pop(kernel_id, None)
        app = _governance_app(self)
        if app is None:
            return
        if app.kernel_jail is not None:
            app.kernel_jail.remove_kernel_dir(kernel_id)
        try:
            app.revoke_kernel(kernel_id)
        except Exception:
            log.exception("governed_server: could not revoke the credential of kernel %s", kernel_id)
