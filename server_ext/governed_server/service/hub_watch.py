"""The service ends the kernel credentials of single-user servers the Hub reports stopped.

A lease ends on its own when a server stops renewing it; this ends it at once when the Hub says the
server is gone (stopped by its user, culled, or the Hub admin), whatever the lease says.
"""

from __future__ import annotations

import logging
import os

import httpx

from governed_server.service.credentials import CredentialIssuer

log = logging.getLogger("governed_server")
WATCH_INTERVAL_S = 15


def running_servers(api_url: str, token: str, username: str) -> bool | None:
    """Whether the Hub reports a running server for ``username`` (None: the Hub did not say)."""
    try:
        response = httpx.get(
            f"{api_url.rstrip('/')}/users/{username}", headers={"Authorization": f"token {token}"}, timeout=10
        )
    except httpx.HTTPError as error:
        log.warning("governed_server: cannot ask the Hub about %s's server: %s", username, error)
        return None
    if response.status_code == 404:
        return False
    if response.status_code != 200:
        log.warning("governed_server: the Hub answered %s about %s's server", response.status_code, username)
        return None
    servers = response.json().get("servers")
    if servers is None:  # the service's token lacks read:servers: it cannot tell
        return None
    return any(bool(server.get("ready")) or bool(server.get("pending")) for server in servers.values())


def revoke_stopped(credentials: CredentialIssuer) -> int:
    """Revoke the leased credentials of every user whose servers all stopped; returns how many."""
    api_url, token = os.environ.get("JUPYTERHUB_API_URL", ""), os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api_url or not token:
        return 0
    revoked = 0
    for username, kernel_ids in credentials.leased_users().items():
        if running_servers(api_url, token, username) is False:
            for kernel_id in kernel_ids:
                revoked += credentials.revoke(kernel_id)
            log.info(
                "governed_server: %s's server stopped: %d kernel credential(s) revoked", username, revoked
            )
    return revoked
