"""HTTP handlers of the governance API; each stays thin: parse, authorize, call the service, reply."""

from __future__ import annotations

from typing import Any

from governed_server.service.handlers.approvals import (
    ApprovalCancelHandler,
    ApprovalDecisionHandler,
    ApprovalHandler,
    ApprovalListHandler,
)
from governed_server.service.handlers.audit import AuditQueryHandler, AuditVerifyHandler
from governed_server.service.handlers.credentials import CredentialHandler, CredentialsHandler
from governed_server.service.handlers.events_stream import GovernanceEventsHandler
from governed_server.service.handlers.health import HealthHandler
from governed_server.service.handlers.kernel import (
    KernelApprovalHandler,
    KernelApprovalsHandler,
    KernelAuditHandler,
    KernelCancelHandler,
    KernelConsumeHandler,
    KernelRequestsHandler,
)
from governed_server.service.handlers.kernel_stream import KernelAuditStreamHandler
from governed_server.service.handlers.me import MeHandler
from governed_server.service.handlers.servers import (
    ServerKernelHandler,
    ServerKernelsHandler,
    ServerRecordsHandler,
    ServerReportHandler,
)

API_PREFIX = "/governance/api"
_ID = r"(?P<request_id>[0-9a-f-]{36})"
_KERNEL = r"(?P<kernel_id>[A-Za-z0-9_.-]{1,64})"


def default_handlers() -> list[tuple[str, Any]]:
    """The routes under ``/governance/api/`` (relative to the server's base URL)."""
    routes: list[tuple[str, Any]] = [
        ("health", HealthHandler),
        ("me", MeHandler),
        ("approvals", ApprovalListHandler),
        (f"approvals/{_ID}", ApprovalHandler),
        (f"approvals/{_ID}/decision", ApprovalDecisionHandler),
        (f"approvals/{_ID}/cancel", ApprovalCancelHandler),
        ("audit", AuditQueryHandler),
        ("audit/verify", AuditVerifyHandler),
        ("credentials", CredentialsHandler),
        (r"credentials/(?P<kernel_id>[A-Za-z0-9_.-]{1,64})", CredentialHandler),
        ("kernel/approvals", KernelApprovalsHandler),
        (f"kernel/approvals/{_ID}/wait", KernelApprovalHandler),
        (f"kernel/approvals/{_ID}/use", KernelConsumeHandler),
        (f"kernel/approvals/{_ID}/cancel", KernelCancelHandler),
        ("kernel/audit", KernelAuditHandler),
        ("kernel/requests", KernelRequestsHandler),
        ("kernel/audit/stream", KernelAuditStreamHandler),
        ("events", GovernanceEventsHandler),
        ("servers/records", ServerRecordsHandler),
        ("servers/kernels", ServerKernelsHandler),
        (f"servers/kernels/{_KERNEL}", ServerKernelHandler),
        (f"servers/kernels/{_KERNEL}/report", ServerReportHandler),
    ]
    return [(rf"{API_PREFIX}/{path}/?", handler) for path, handler in routes]
