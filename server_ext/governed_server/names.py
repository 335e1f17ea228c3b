"""Names the governance service, the single-user servers and the kernels agree on: the header a
kernel authenticates with and the environment variables that carry its credential and service."""

from __future__ import annotations

from governed_kernel.client import AUTH_SCHEME, SERVICE_URL_ENV, TOKEN_ENV

__all__ = ["AUTH_SCHEME", "HUB_SERVICE_ENV", "REVOKED_MESSAGE", "SERVICE_URL_ENV", "TOKEN_ENV", "USER_ENV"]

USER_ENV = "GOVERNED_KERNEL_USER"
"""Informational copy of the user the credential is bound to (the server decides, not this value)."""

REVOKED_MESSAGE = "the kernel credential is unknown or revoked: restart the kernel from Jupyter"
"""The service's answer (403) to a kernel or server credential it does not take (any more)."""

HUB_SERVICE_ENV = "GOVERNED_HUB_SERVICE_URL"
"""The governance service a single-user server is a client of (set by ``governed_server.hub``)."""
