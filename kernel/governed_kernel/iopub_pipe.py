"""The IOPub pipe of forked processes over IPC, not loopback TCP, when the kernel's channels are IPC.

ipykernel's IOPub thread listens on ``tcp://127.0.0.1:<random port>`` for the output of processes
forked from the kernel (``multiprocessing`` with the fork start method): a TCP listener that every
local user can reach, even when all five kernel channels are IPC sockets in a private folder.
Here that pipe is an IPC socket beside the channels (``<ip>-fork``, owner only), so a governed
kernel started by the server listens on no TCP port at all. Messages on it are still checked
against the thread's random key, as in ipykernel.
"""

from __future__ import annotations

import os
from typing import Any

import zmq
from ipykernel.iostream import IOPubThread
from zmq.eventloop.zmqstream import ZMQStream


class IpcPipeIOPubThread(IOPubThread):
    """An :class:`IOPubThread` whose pipe for forked processes is ``ipc://<address>``."""

    def __init__(self, socket: Any, pipe_address: str, **kwargs: Any) -> None:
        self._pipe_address = pipe_address
        super().__init__(socket, **kwargs)  # type: ignore[no-untyped-call]

    def _setup_pipe_in(self) -> None:
        ctx = self.socket.context
        self._pipe_uuid = os.urandom(16)
        pipe_in = ctx.socket(zmq.PULL)
        pipe_in.linger = 0
        try:
            pipe_in.bind(self._pipe_address)
        except zmq.ZMQError:
            self._pipe_flag = False  # as ipykernel: forked processes' output is then not shown
            pipe_in.close()
            return
        self._pipe_in = ZMQStream(pipe_in, self.io_loop)
        self._pipe_in.on_recv(self._handle_pipe_msg)

    def _setup_pipe_out(self) -> tuple[Any, Any]:
        ctx = zmq.Context()
        pipe_out = ctx.socket(zmq.PUSH)
        pipe_out.linger = 3000
        pipe_out.connect(self._pipe_address)
        return ctx, pipe_out
