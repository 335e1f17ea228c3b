"""The inbound guard of batch runs: ``jupyter governance run`` records each cell before sending it.

In JupyterLab the server records every request on its way to a kernel (``inbound_gate``). A batch
run has no server between nbclient and the kernel, so the run's own kernel client records each
``execute_request`` with the governance service first (``POST /kernel/requests``, with the run's
kernel credential) and marks it ``metadata.governed.guard = "batch"``; the kernel's records then say
which guard each request passed. This guard runs as the same OS user as the kernel: its records are
marked ``guard: batch``, a lower assurance than the server's. A request it cannot record is not sent
(the run stops with a governance error).
"""

from __future__ import annotations

from typing import Any

import httpx
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from governed_kernel.requests import GOVERNED_METADATA
from governed_server.names import AUTH_SCHEME

REQUESTS_PATH = "kernel/requests"


class BatchGuardedClient(AsyncKernelClient):
    """A kernel client whose ``execute`` records the request with the service before sending it."""

    api_url = ""
    token = ""

    def execute(
        self,
        code: str,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: dict[str, Any] | None = None,
        allow_stdin: bool | None = None,
        stop_on_error: bool = True,
    ) -> str:
        content = {
            "code": code,
            "silent": silent,
            "store_history": store_history,
            "user_expressions": user_expressions or {},
            "allow_stdin": self.allow_stdin if allow_stdin is None else allow_stdin,
            "stop_on_error": stop_on_error,
        }
        msg = self.session.msg("execute_request", content, metadata={GOVERNED_METADATA: {"guard": "batch"}})
        record = {
            "msg_id": msg["header"]["msg_id"],
            "code": code,
            "user_expressions": content["user_expressions"],
        }
        try:
            response = httpx.post(
                self.api_url + REQUESTS_PATH, json=record, timeout=30,
                headers={"Authorization": f"{AUTH_SCHEME} {self.token}"},
            )  # fmt: skip
        except httpx.HTTPError as error:
            raise RuntimeError(f"the request could not be recorded before it was sent ({error})") from None
        if response.status_code != 201:
            raise RuntimeError(
                f"the governance service refused to record the request (HTTP {response.status_code}): "
                f"{response.text[:300]}; it was not sent"
            )
        self.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])


class GuardedNotebookClient(NotebookClient):
    """nbclient's NotebookClient whose kernel client is a :class:`BatchGuardedClient`."""

    def __init__(self, *args: Any, api_url: str, token: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_factory = type(
            "BoundBatchGuardedClient", (BatchGuardedClient,), {"api_url": api_url, "token": token}
        )

    def create_kernel_manager(self) -> KernelManager:
        manager: KernelManager = super().create_kernel_manager()
        manager.client_factory = self.client_factory
        return manager
