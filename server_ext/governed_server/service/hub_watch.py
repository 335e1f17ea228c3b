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


def running_servers(hub: httpx.Client, username: str) -> bool | None:
    """Whether the Hub reports a running server for ``username`` (None: the Hub did not say)."""
    try:
        response = hub.get(f"users/{username}")
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
    leased = credentials.leased_users()
    if not leased:
        return 0
    revoked = 0
    # One client per sweep: a client's TLS context (the CA bundle parsed) costs more CPU than the calls.
    headers = {"Authorization": f"token {token}"}
    with httpx.Client(base_url=f"{api_url.rstrip('/')}/", headers=headers, timeout=10) as hub:
        stopped = [(user, ids) for user, ids in leased.items() if running_servers(hub, user) is False]
    for username, kernel_ids in stopped:
        ended = sum(credentials.revoke(kernel_id) for kernel_id in kernel_ids)
        log.info("governed_server: %s's server stopped: %d kernel credential(s) revoked", username, ended)
        revoked += ended
    return revoked
