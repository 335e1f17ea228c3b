"""``/kernel/audit/stream``: a kernel's audit records over one WebSocket instead of a request each.

Why: a cell's start record must be stored before the cell runs, so its delivery sits on every
cell's critical path. Over HTTP each record paid jupyter_server's whole request cycle; on the
stream it pays one small frame each way. The contract is the same as ``POST /kernel/audit``:

- the kernel authenticates at the upgrade with its credential in the ``Authorization`` header
  (browsers cannot set that header on a WebSocket, and a request that carries an ``Origin`` is
  refused, so no page can open this socket for a user);
- the credential is checked again before a message when the last check is more than
  :data:`CREDENTIAL_RECHECK_S` old, so revoking it stops the stream within that time (a revoked
  kernel can at most add its own records in that second; the check costs a database read);
- each message ``{"id": n, "records": [...]}`` is validated with the same schema and stored in one
  transaction; the answer is ``{"id": n, "status": 201, "records": [{"seq", "hash"}]}``, or
  ``{"id": n, "status": 400|403|503, "message": "..."}`` with nothing stored.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from tornado import web
from tornado.websocket import WebSocketHandler

from governed_server.audit_records import AuditInputError
from governed_server.names import REVOKED_MESSAGE
from governed_server.offload import offload
from governed_server.service.audit import AuditError
from governed_server.service.handlers.base import (
    MAX_BODY,
    KernelHandler,
    body_problem,
    masked_message,
)
from governed_server.service.handlers.schemas import AUDIT_INGEST

log = logging.getLogger("governed_server")

CREDENTIAL_RECHECK_S = 1.0


class KernelAuditStreamHandler(WebSocketHandler, KernelHandler):
    """``GET /kernel/audit/stream`` (WebSocket upgrade): audit record batches in, acknowledgements out."""

    _checked_at = 0.0

    def set_default_headers(self) -> None:
        """No page headers (CSP and the like) on a WebSocket upgrade."""

    async def prepare(self) -> None:  # type: ignore[override]
        # Kernels never send an Origin; anything that does is a browser page (even a same-origin one,
        # which tornado would let through without asking check_origin): refused.
        if self.request.headers.get("Origin") is not None:
            self.fail(403, "the audit stream is for kernels: browser pages may not open it")
        await super().prepare()

    def check_origin(self, origin_to_satisfy_tornado: str = "") -> bool:
        """Any cross-origin page is refused too (see :meth:`prepare`)."""
        return False

    @property
    def max_message_size(self) -> int:
        return MAX_BODY

    @property
    def ping_interval(self) -> float | None:
        """No pings, whatever ``websocket_ping_interval`` says: the kernel reads its stream only during
        an exchange (a blocking client), so it could not answer them; a kernel that goes away closes
        its socket with its process, and its credential is revoked."""
        return None

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)  # one small answer per message: never wait for Nagle's algorithm
        self._checked_at = time.monotonic()  # prepare() has just resolved the credential

    async def on_message(self, message: str | bytes) -> None:
        """tornado awaits this before reading the next message: records are stored in their order."""
        request_id: Any = None
        revoked = False
        try:
            body = json.loads(message)
            request_id = body.get("id") if isinstance(body, dict) else None
            if not isinstance(body, dict):
                raise _Refused(400, "body: the message is not a JSON object")
            records: dict[str, Any] = {"records": body.get("records")}
            problem = body_problem(AUDIT_INGEST, records)
            if problem:
                raise _Refused(400, problem)
            if time.monotonic() - self._checked_at > CREDENTIAL_RECHECK_S:
                if await offload(self.service.credentials.resolve, self.kernel_token) != self.kernel:
                    revoked = True
                    raise _Refused(403, REVOKED_MESSAGE)
                self._checked_at = time.monotonic()
            stored = await offload(
                self.service.ingest_kernel_audit,
                self.kernel,
                records["records"],
                self.request.remote_ip or "",
            )
            answer: dict[str, Any] = {
                "id": request_id,
                "status": 201,
                "records": [{"seq": r.seq, "hash": r.hash} for r in stored],
            }
        except (ValueError, UnicodeDecodeError) as error:
            answer = {"id": request_id, "status": 400,
                      "message": masked_message(f"the message is not valid JSON: {error}")}  # fmt: skip
        except _Refused as refused:
            answer = {"id": request_id, "status": refused.status, "message": refused.message}
        except web.HTTPError as error:  # the service is not running (503, with the reason)
            answer = {"id": request_id, "status": error.status_code, "message": error.log_message or ""}
        except AuditInputError as error:
            answer = {"id": request_id, "status": 400, "message": masked_message(str(error))}
        except AuditError as error:
            message = masked_message(str(error))
            log.error("governance: audit stream of kernel %s: %s", self.kernel.kernel_id, message)
            answer = {"id": request_id, "status": 503, "message": message}
        except Exception:
            log.exception("governance: audit stream of kernel %s failed", self.kernel.kernel_id)
            answer = {
                "id": request_id,
                "status": 500,
                "message": "internal error in the governance service; the server log has the details",
            }
        if self.ws_connection is None:
            return
        self.write_message(json.dumps(answer))
        if revoked:
            self.close(4403, "kernel credential revoked")


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
