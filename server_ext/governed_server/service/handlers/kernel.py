"""Endpoints for governed kernels (per-kernel credential): request, wait, use, cancel, audit ingest."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any, ClassVar

from tornado import web

from governed_kernel.masking import MaskingError, mask_json
from governed_server.approval_model import ApprovalError, NewRequest
from governed_server.audit_records import AuditInputError
from governed_server.offload import offload
from governed_server.service.handlers.base import KernelHandler
from governed_server.service.handlers.schemas import (
    APPROVAL_CREATE,
    AUDIT_INGEST,
    BATCH_REQUEST,
    CONSUME,
    EMPTY,
)

WAIT_DEFAULT_S = 25
WAIT_MAX_S = 60
RECHECK_S = 0.5
"""How often a long-poll re-reads the store, to see decisions made by other server processes."""


def code_matches_hash(code: str, cell_hash: str, mask_char: str) -> bool:
    """Whether the code shown to approvers can be the cell with hash ``cell_hash``.

    Equal hashes prove it. The kernel masks card numbers before sending the code, which changes the
    hash; a difference is accepted only when the code shows a masked card number (a run of at least six
    mask characters, digits or separators ending in digits), never for an otherwise different cell.
    """
    if hashlib.sha256(code.encode("utf-8")).hexdigest() == cell_hash:
        return True
    masked_pan = re.compile(rf"(?:{re.escape(mask_char)}[ \-.]?){{6,}}\d{{2,4}}")
    return masked_pan.search(code) is not None


class KernelApprovalsHandler(KernelHandler):
    """``POST /kernel/approvals``: open a request for a cell (or get back a still-valid approval)."""

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"post": APPROVAL_CREATE}

    @web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        service = self.service
        if not code_matches_hash(body["code"], body["cell_hash"], service.masker.config.mask_char):
            # The approver must see the cell that will run: a kernel may only show masked card numbers.
            self.fail(400, "cell_hash is not the SHA-256 of the code shown (only masked card numbers differ)")
        # Approvers see the rules' reasons and the path: masked here again, whatever the kernel did
        # (a reason can quote the cell, e.g. a process's arguments). Unmaskable → refused, not stored.
        try:
            rules, _ = mask_json(body["rules"], service.masker, by_name=False)  # keys are field names
            notebook_path = service.masker.mask_text(body.get("notebook_path", ""))[0]
            code = service.masker.mask_text(body["code"])[0]
        except MaskingError:
            self.fail(400, "the request could not be masked; it was not stored")
        new = NewRequest(
            cell_hash=body["cell_hash"],
            code_masked=code,
            policy_version=body["policy_version"],
            rules=rules,
            notebook_path=notebook_path,
            cell_id=body.get("cell_id", ""),
        )
        view = await offload(service.approvals.request, self.kernel, new)
        if view.status == "pending" and view.kernel_id == self.kernel.kernel_id and view.uses == 0:
            service.announce("approval.requested", view, self.kernel.username)
        self.reply(view.to_json(), status=201 if view.status == "pending" else 200)


class KernelApprovalHandler(KernelHandler):
    """``GET /kernel/approvals/{id}/wait?timeout=S``: long-poll until decided, expired or timed out."""

    @web.authenticated
    async def get(self, request_id: str) -> None:
        timeout = self.query_int("timeout", WAIT_DEFAULT_S, 0, WAIT_MAX_S)
        service = self.service
        deadline = time.monotonic() + timeout
        while True:
            view = await offload(service.current_approval, request_id)
            if view.requester != self.kernel.username:
                raise ApprovalError(403, "this request belongs to another user")
            remaining = deadline - time.monotonic()
            if view.status != "pending" or remaining <= 0:
                self.reply(view.to_json())
                return
            await service.waiters.wait(request_id, min(RECHECK_S, remaining))


class KernelConsumeHandler(KernelHandler):
    """``POST /kernel/approvals/{id}/use`` with the cell hash: the kernel is about to run the cell.

    The body may carry the cell's start record: it is stored in the use's transaction."""

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"post": CONSUME}

    @web.authenticated
    async def post(self, request_id: str) -> None:
        body = self.json_body()
        try:
            view, stored = await offload(
                self.service.use_approval, self.kernel, request_id, body["cell_hash"],
                body.get("records", []), self.request.remote_ip or "",
            )  # fmt: skip
        except AuditInputError as error:
            self.fail(400, str(error))
        self.reply({**view.to_json(), "records": [{"seq": r.seq, "hash": r.hash} for r in stored]})


class KernelCancelHandler(KernelHandler):
    """``POST /kernel/approvals/{id}/cancel``: the analyst interrupted the wait."""

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"post": EMPTY}

    @web.authenticated
    async def post(self, request_id: str) -> None:
        self.json_body()
        service = self.service
        view = await offload(service.approvals.cancel, self.kernel, request_id)
        service.announce("approval.cancelled", view, self.kernel.username)
        self.reply(view.to_json())


class KernelAuditHandler(KernelHandler):
    """``POST /kernel/audit``: a batch of the kernel's own audit records, in one transaction."""

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"post": AUDIT_INGEST}

    @web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        try:
            stored = await offload(
                self.service.ingest_kernel_audit, self.kernel, body["records"], self.request.remote_ip or ""
            )
        except AuditInputError as error:
            self.fail(400, str(error))
        self.reply({"records": [{"seq": r.seq, "hash": r.hash} for r in stored]}, status=201)


class KernelRequestsHandler(KernelHandler):
    """``POST /kernel/requests``: a batch run records a cell before sending it to its kernel
    (``governed_server.single_user.batch_guard``); the record is marked ``guard: batch``."""

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {"post": BATCH_REQUEST}

    @web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        try:
            stored = await offload(
                self.service.record_batch_request, self.kernel, body, self.request.remote_ip or ""
            )
        except AuditInputError as error:
            self.fail(400, str(error))
        self.reply({"seq": stored.seq}, status=201)
