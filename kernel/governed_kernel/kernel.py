"""The governed IPython kernel: ipykernel's kernel with every execute request going through the
:class:`~governed_kernel.governor.Governor` (classify → approve → record → run under the guard →
record), and the kernel's identity (what ``kernel_info`` reports) in one place.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ipykernel.ipkernel import IPythonKernel

from governed_kernel._version import __version__
from governed_kernel.governor import HTTP_WARMUP_IDLE_S, Cell, Governor

SHUTDOWN_FLUSH_TIMEOUT_S = 10.0
"""How long a shutdown waits for the last audit records (a running cell delays it)."""


class GovernedKernel(IPythonKernel):
    """An :class:`IPythonKernel` whose cells are policy-checked, approved when needed and audited."""

    implementation = "governed_kernel"
    implementation_version = __version__
    banner = f"Python 3 (governed) — governed_kernel {__version__}"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.governor = Governor(self)

    def start(self) -> None:
        super().start()  # type: ignore[no-untyped-call]
        self.io_loop.call_later(
            HTTP_WARMUP_IDLE_S, self.governor.warm_http_when_idle, self.io_loop.call_later
        )

    @property
    def kernel_info(self) -> dict[str, Any]:
        info: dict[str, Any] = super().kernel_info
        info["help_links"] = [
            *info.get("help_links", []),
            {"text": "Governed kernel", "url": "https://github.com/governed-kernel/governed-kernel#readme"},
        ]
        return info

    async def do_execute(
        self,
        code: str,
        silent: bool,
        store_history: bool = True,
        user_expressions: dict[str, Any] | None = None,
        allow_stdin: bool = False,
        *,
        cell_meta: dict[str, Any] | None = None,
        cell_id: str | None = None,
    ) -> dict[str, Any]:
        cell = Cell(
            code=code,
            cell_id=cell_id or "",
            silent=silent,
            store_history=store_history,
            user_expressions=user_expressions,
        )

        async def run() -> dict[str, Any]:
            reply: dict[str, Any] = await super(GovernedKernel, self).do_execute(  # type: ignore[no-untyped-call]
                code,
                silent,
                store_history,
                user_expressions,
                allow_stdin,
                cell_meta=cell_meta,
                cell_id=cell_id,
            )
            return reply

        return await self.governor.execute(cell, run)

    async def do_shutdown(self, restart: bool) -> dict[str, Any]:
        """Deliver the audit records still buffered before the kernel goes away.

        ipykernel answers shutdown requests on the control thread's event loop; the service client
        (its audit stream) lives on the shell's loop, so the closing runs there.
        """
        shell_loop = getattr(getattr(self, "io_loop", None), "asyncio_loop", None)
        if shell_loop is None or shell_loop is asyncio.get_running_loop() or not shell_loop.is_running():
            await self.governor.close()
        else:
            closing = asyncio.run_coroutine_threadsafe(self.governor.close(), shell_loop)
            try:
                await asyncio.wait_for(asyncio.wrap_future(closing), SHUTDOWN_FLUSH_TIMEOUT_S)
            except asyncio.TimeoutError:
                self.log.warning(
                    "governed kernel: audit records not delivered within %s s at shutdown; they stay "
                    "in the local buffer %s", SHUTDOWN_FLUSH_TIMEOUT_S, self.governor.buffer.path,
                )  # fmt: skip
        reply: dict[str, Any] = super().do_shutdown(restart)  # type: ignore[no-untyped-call]
        return reply
