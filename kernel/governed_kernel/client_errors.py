"""What the kernel's service client raises; callers fail closed on both."""

from __future__ import annotations

SETUP_HINT = (
    "Start the notebook from JupyterLab with the governed_server extension enabled, or run it with "
    "`jupyter governance run NOTEBOOK`; for other runners set GOVERNED_SERVICE_URL and "
    "GOVERNED_KERNEL_TOKEN (see docs/batch.md)."
)


class GovernanceUnavailable(RuntimeError):
    """The governance service cannot be used (not configured, unreachable, refused): fail closed."""


class ApprovalRefused(RuntimeError):
    """The service answered, and the answer is no (403/404/409): the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
