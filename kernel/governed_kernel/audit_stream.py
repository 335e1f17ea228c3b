"""The kernel's side of ``/kernel/audit/stream``: audit records over one WebSocket.

A cell's start record must be stored before the cell runs, so its round trip is paid by every cell;
one long-lived socket costs a small frame each way instead of a whole HTTP request. Semantics are
those of ``POST /kernel/audit`` (same schema, same answers, fail closed). When the stream cannot be
opened for a reason other than a refused credential (an older server without the endpoint, a proxy
that does not pass WebSockets), :meth:`AuditStream.send` returns None and the caller uses HTTP;
after a failed attempt the stream is not tried again for :data:`RETRY_AFTER_S` seconds.

The exchange is blocking, on a plain socket with the sans-I/O ``wsproto`` doing the framing: the
kernel has nothing else to do while a start record is on its way (the cell waits for it), and a
blocking ``recv`` wakes the kernel exactly when the answer arrives, without the event loop's futures
and callbacks (measured: about half the kernel's CPU and 0.2 ms less per round trip than an asyncio
WebSocket client). The shell's event loop is held for one round trip (at most ``timeout`` when the
service hangs). An interrupt (Ctrl-C, the frontend's interrupt) during the exchange drops the
connection and reports the record as not delivered: the cell does not run.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from governed_kernel.client_errors import SETUP_HINT, ApprovalRefused, GovernanceUnavailable

STREAM_PATH = "kernel/audit/stream"
RETRY_AFTER_S = 30.0
REVOKED_CLOSE_CODE = 4403
MAX_MESSAGE_SIZE = 8 * 1024 * 1024
_RECEIVE_SIZE = 65536


class StreamClosed(Exception):
    """The connection ended (server restart, network, revoked credential); ``code`` if it said why."""

    def __init__(self, code: int | None = None) -> None:
        super().__init__(f"closed ({code})")
        self.code = code


class _Refused(Exception):
    """The upgrade was answered with an HTTP error."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class StreamConnection:
    """One blocking WebSocket: a socket and wsproto's protocol state."""

    def __init__(self, url: str, auth_header: str, timeout: float) -> None:
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        sock = socket.create_connection((parts.hostname or "localhost", port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small frames, each awaited
            if secure:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
            self.socket = sock
            self.protocol = WSConnection(ConnectionType.CLIENT)
            self._unread: deque[Event] = deque()  # one read can bring several answers
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            self._send(Request(host=parts.netloc, target=target,
                               extra_headers=[(b"authorization", auth_header.encode())]))  # fmt: skip
            self._handshake()
        except BaseException:
            sock.close()
            raise

    def send_text(self, text: str) -> None:
        self._send(TextMessage(data=text))

    def receive_text(self) -> str:
        """The next text message (raises StreamClosed, OSError, TimeoutError)."""
        parts: list[str] = []
        size = 0
        while True:
            if not self._unread:
                self._unread.extend(self._events())
            while self._unread:
                event = self._unread.popleft()
                if isinstance(event, TextMessage):
                    parts.append(event.data)
                    size += len(event.data)
                    if size > MAX_MESSAGE_SIZE:
                        raise StreamClosed()
                    if event.message_finished:
                        return "".join(parts)
                elif isinstance(event, Ping):
                    self._send(event.response())
                elif isinstance(event, CloseConnection):
                    raise StreamClosed(event.code)

    def close(self) -> None:
        with contextlib.suppress(OSError, LocalProtocolError):  # already closed: nothing to say
            self._send(CloseConnection(code=1000))
        self.socket.close()

    def _handshake(self) -> None:
        refused: _Refused | None = None
        body = b""
        while True:
            events = self._events()
            for index, event in enumerate(events):
                if isinstance(event, AcceptConnection):
                    self._unread.extend(events[index + 1 :])
                    return
                if isinstance(event, RejectConnection):
                    refused = _Refused(event.status_code, "")
                    if not event.has_body:
                        raise refused
                elif isinstance(event, RejectData) and refused is not None:
                    body += event.data
                    if event.body_finished:
                        raise _Refused(refused.status, _reason(body) or f"HTTP {refused.status}")

    def _events(self) -> list[Event]:
        data = self.socket.recv(_RECEIVE_SIZE)
        if not data:
            raise StreamClosed()
        try:
            self.protocol.receive_data(data)
            return list(self.protocol.events())
        except RemoteProtocolError:
            raise StreamClosed() from None

    def _send(self, event: Event) -> None:
        self.socket.sendall(self.protocol.send(event))


@dataclass
class PendingBatch:
    """A batch put on the stream whose answer has not been read yet (:meth:`AuditStream.start`)."""

    records: list[dict[str, Any]]
    message_id: int
    connection: StreamConnection | None
    """None when the write found the connection closed: :meth:`AuditStream.finish` sends it again."""


class StreamUnusable(Exception):
    """No stream connection could be made (the caller may use HTTP)."""


class AuditStream:
    """One WebSocket to the service; batches go out one at a time, each waits for its answer.

    :meth:`send` does both halves; :meth:`start` and :meth:`finish` split them, so the kernel can
    prepare a cell while its start record travels (the cell's code runs only after :meth:`finish`).
    """

    def __init__(self, base_url: str, auth_header: str, *, timeout: float = 10.0) -> None:
        scheme, _, rest = base_url.partition("://")
        self.url = ("wss" if scheme == "https" else "ws") + "://" + rest + STREAM_PATH
        self._auth_header = auth_header
        self._timeout = timeout
        self._connection: StreamConnection | None = None
        self._next_id = 0
        self._unusable_until = 0.0

    async def send(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The service's answer for ``records``; None when the stream is unusable now (use HTTP).

        A coroutine for its callers, but it does not yield: the exchange blocks (see the module).
        """
        pending = self.start(records)
        if pending is None:
            return None
        try:
            return self.finish(pending)
        except StreamUnusable:
            return None

    def start(self, records: list[dict[str, Any]]) -> PendingBatch | None:
        """Write ``records`` to the stream and return at once; None when the stream is unusable."""
        connection = self._connect()
        if connection is None:
            return None
        self._next_id += 1
        pending = PendingBatch(records, self._next_id, connection)
        if not self._write(connection, pending):
            pending.connection = None
        return pending

    def finish(self, pending: PendingBatch) -> dict[str, Any]:
        """Block until the answer for ``pending`` (one more try on a new connection if the first one
        turned out closed). Raises GovernanceUnavailable, ApprovalRefused, or StreamUnusable."""
        answer = self._read(pending, last_try=False) if pending.connection is not None else None
        if answer is None:
            connection = self._connect()
            if connection is None:
                raise StreamUnusable()
            self._next_id += 1
            pending = PendingBatch(pending.records, self._next_id, connection)
            if not self._write(connection, pending):
                raise GovernanceUnavailable("the governance service closed the audit stream")
            answer = self._read(pending, last_try=True)
            assert answer is not None  # the last try answers or raises
        return _checked(answer)

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> StreamConnection | None:
        if self._connection is not None:
            return self._connection
        if time.monotonic() < self._unusable_until:
            return None
        try:
            self._connection = StreamConnection(self.url, self._auth_header, self._timeout)
        except _Refused as refused:
            if refused.status in (401, 403):
                raise GovernanceUnavailable(
                    f"the governance service refused this kernel (HTTP {refused.status}: {refused.reason}). "
                    f"{SETUP_HINT if refused.status == 401 else ''}".strip()
                ) from None
            self._unusable_until = time.monotonic() + RETRY_AFTER_S
            return None
        except (OSError, StreamClosed, LocalProtocolError):
            self._unusable_until = time.monotonic() + RETRY_AFTER_S
            return None
        except KeyboardInterrupt:
            raise GovernanceUnavailable("interrupted while connecting to the governance service") from None
        return self._connection

    def _write(self, connection: StreamConnection, pending: PendingBatch) -> bool:
        """Put the batch on the wire; False when the connection turned out to be closed."""
        try:
            connection.send_text(json.dumps({"id": pending.message_id, "records": pending.records}))
        except KeyboardInterrupt:
            self._drop(connection)
            raise GovernanceUnavailable("interrupted while delivering the audit record") from None
        except (StreamClosed, OSError, LocalProtocolError):
            self._drop(connection)
            return False
        return True

    def _read(self, pending: PendingBatch, *, last_try: bool) -> dict[str, Any] | None:
        """The answer to ``pending``; None when the connection turned out to be closed."""
        connection = pending.connection
        assert connection is not None
        try:
            raw = connection.receive_text()
        except TimeoutError:
            self._drop(connection)
            raise GovernanceUnavailable(
                f"the governance service did not acknowledge the audit record within {self._timeout:g} s"
            ) from None
        except KeyboardInterrupt:
            self._drop(connection)  # an answer may still be on its way: this connection is done
            raise GovernanceUnavailable("interrupted while delivering the audit record") from None
        except (StreamClosed, OSError, LocalProtocolError) as error:
            # Closed by the server (restart, revoked credential) or the network: a new connection
            # gets one more try (a batch stored before the close is not stored again: event ids).
            code = error.code if isinstance(error, StreamClosed) else None
            self._drop(connection)
            if code == REVOKED_CLOSE_CODE or last_try:
                why = " (kernel credential revoked: restart the kernel from Jupyter)" if code == 4403 else ""
                raise GovernanceUnavailable(f"the governance service closed the audit stream{why}") from None
            return None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or answer.get("id") != pending.message_id:
            self._drop(connection)
            raise GovernanceUnavailable("the governance service answered the audit stream out of protocol")
        return answer

    def _drop(self, connection: StreamConnection) -> None:
        connection.close()
        if self._connection is connection:
            self._connection = None


def _checked(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer of a stored batch; the same exceptions as the HTTP client for the others."""
    status = answer.get("status")
    message = str(answer.get("message") or f"status {status}")
    if status == 201:
        return answer
    if status == 403:
        raise GovernanceUnavailable(f"{message}.")
    if isinstance(status, int) and 400 <= status < 500:
        raise ApprovalRefused(status, message)
    raise GovernanceUnavailable(f"the governance service refused the audit record ({status}: {message})")


def _reason(body: bytes) -> str:
    """The ``message`` of a JSON error body, if it has one."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    return str(data.get("message") or "") if isinstance(data, dict) else ""
