"""The kernel's side of ``/kernel/audit/stream``: audit records over one WebSocket.

A cell's start record must be stored before the cell runs, so its round trip is paid by every cell;
one long-lived socket costs a small frame each way instead of a whole HTTP request. Semantics are
those of ``POST /kernel/audit`` (same schema, same answers, fail closed). When the stream cannot be
opened for a reason other than a refused credential (an older server without the endpoint, a proxy
that does not pass WebSockets), :meth:`AuditStream.send` returns None and the caller uses HTTP;
after a failed attempt the stream is not tried again for :data:`RETRY_AFTER_S` seconds.
Uses tornado's WebSocket client: ipykernel already runs on tornado, so it costs no import.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from governed_kernel.client_errors import SETUP_HINT, ApprovalRefused, GovernanceUnavailable

STREAM_PATH = "kernel/audit/stream"
RETRY_AFTER_S = 30.0
REVOKED_CLOSE_CODE = 4403
MAX_MESSAGE_SIZE = 8 * 1024 * 1024


class AuditStream:
    """One WebSocket to the service; batches go out one at a time, each waits for its answer."""

    def __init__(self, base_url: str, auth_header: str, *, timeout: float = 10.0) -> None:
        scheme, _, rest = base_url.partition("://")
        self.url = ("wss" if scheme == "https" else "ws") + "://" + rest + STREAM_PATH
        self._auth_header = auth_header
        self._timeout = timeout
        self._connection: WebSocketClientConnection | None = None
        self._lock = asyncio.Lock()
        self._next_id = 0
        self._unusable_until = 0.0

    async def send(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The service's answer for ``records``; None when the stream is unusable now (use HTTP)."""
        async with self._lock:
            for attempt in (1, 2):
                connection = await self._connect()
                if connection is None:
                    return None
                answer = await self._exchange(connection, records, last_try=attempt == 2)
                if answer is not None:
                    return _checked(answer)
            return None  # pragma: no cover - the second attempt answers or raises

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _connect(self) -> WebSocketClientConnection | None:
        if self._connection is not None:
            return self._connection
        if time.monotonic() < self._unusable_until:
            return None
        request = HTTPRequest(
            self.url,
            headers={"Authorization": self._auth_header},
            connect_timeout=self._timeout,
            request_timeout=self._timeout,
        )
        try:
            self._connection = await websocket_connect(
                request, max_message_size=MAX_MESSAGE_SIZE, ping_interval=30
            )
            self._connection.stream.set_nodelay(True)  # small frames, each awaited: no Nagle delay
        except HTTPClientError as error:
            if error.code in (401, 403):
                raise GovernanceUnavailable(
                    f"the governance service refused this kernel (HTTP {error.code}: {_reason(error)}). "
                    f"{SETUP_HINT if error.code == 401 else ''}".strip()
                ) from None
            self._unusable_until = time.monotonic() + RETRY_AFTER_S
            return None
        except (OSError, asyncio.TimeoutError, WebSocketClosedError):
            self._unusable_until = time.monotonic() + RETRY_AFTER_S
            return None
        return self._connection

    async def _exchange(
        self, connection: WebSocketClientConnection, records: list[dict[str, Any]], *, last_try: bool
    ) -> dict[str, Any] | None:
        """Send one batch and read its answer; None when the connection turned out to be closed."""
        self._next_id += 1
        message_id = self._next_id
        try:
            await connection.write_message(json.dumps({"id": message_id, "records": records}))
            raw = await asyncio.wait_for(connection.read_message(), self._timeout)
        except asyncio.TimeoutError:
            self._drop(connection)
            raise GovernanceUnavailable(
                f"the governance service did not acknowledge the audit record within {self._timeout:g} s"
            ) from None
        except WebSocketClosedError:
            raw = None
        if raw is None:  # closed: by the server (restart, revoked credential) or the network
            code = connection.close_code
            self._drop(connection)
            if code == REVOKED_CLOSE_CODE or last_try:
                why = " (kernel credential revoked: restart the kernel from Jupyter)" if code == 4403 else ""
                raise GovernanceUnavailable(f"the governance service closed the audit stream{why}")
            return None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or answer.get("id") != message_id:
            self._drop(connection)
            raise GovernanceUnavailable("the governance service answered the audit stream out of protocol")
        return answer

    def _drop(self, connection: WebSocketClientConnection) -> None:
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


def _reason(error: HTTPClientError) -> str:
    response = error.response
    if response is not None and response.body:
        try:
            body = json.loads(response.body)
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    return error.message or f"HTTP {error.code}"
