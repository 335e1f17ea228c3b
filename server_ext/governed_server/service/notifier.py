"""Approvers hear of requests without Lab open: a webhook on request created, decided and expired.

The body is Slack-compatible (``text``, which Slack, Mattermost, Rocket.Chat and Teams' incoming
webhooks show) with the same facts under ``governance`` for other receivers. It carries ids, user
names, rule ids and a ``/hub/user-redirect/`` link to the panel: never the cell's code, its
notebook path or anything that could hold a card number. With a secret, the body is signed
(``X-Governance-Signature: sha256=<HMAC of the body>``). Delivery runs on the event loop, off every
request's path, with bounded retries; a delivery that never succeeds is itself an audit record
(``notify.failed``). The URL and secret are operator settings (``GovernedServerApp.notify_*``).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from governed_server.offload import offload, on_loop

log = logging.getLogger("governed_server")

NOTIFIED_EVENTS = ("approval.requested", "approval.decided", "approval.expired")
SIGNATURE_HEADER = "X-Governance-Signature"
MAX_DELAY_S = 30.0


@dataclass(frozen=True)
class NotifierSettings:
    url: str
    secret: str = ""
    link_base: str = ""
    """The Hub's public origin (``https://hub.example.com``); the link is a path without it."""
    attempts: int = 5
    first_delay_s: float = 1.0
    timeout_s: float = 10.0


def link(settings: NotifierSettings, request_id: str) -> str:
    """Opens the approver's own Lab (whoever follows it) on the request."""
    return f"{settings.link_base.rstrip('/')}/hub/user-redirect/lab?governance-request={request_id}"


def message(settings: NotifierSettings, event_type: str, view: Any, actor: str) -> dict[str, Any]:
    """The webhook body for one transition (pure; see the module for what it never holds)."""
    rules = [str(rule.get("id", "")) for rule in view.rules if isinstance(rule, dict)]
    url = link(settings, view.id)
    what = {
        "approval.requested": f"{view.requester} asks for approval of a cell",
        "approval.decided": f"{actor} decided {view.requester}'s request: {view.status}",
        "approval.expired": f"{view.requester}'s request expired undecided",
    }.get(event_type, f"{event_type}: {view.status}")
    return {
        "text": f"{what} (rules: {', '.join(rules) or 'none'}; request {view.id}) "
        f"<{url}|open the Governance panel>",
        "governance": {
            "event": event_type,
            "request_id": view.id,
            "status": view.status,
            "requester": view.requester,
            "actor": actor,
            "rules": rules,
            "approvals": view.approvals,
            "required_approvals": view.required_approvals,
            "link": url,
        },
    }


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Notifier:
    """Sends each notified transition to the webhook; ``record_failure`` is told of lost ones."""

    def __init__(self, settings: NotifierSettings, record_failure: Callable[[dict[str, Any]], None]) -> None:
        self.settings = settings
        self.record_failure = record_failure
        self.tasks: set[asyncio.Task[bool]] = set()

    def announce(self, event_type: str, view: Any, actor: str) -> None:
        """Called by the service for every transition (from the loop or a store thread)."""
        if event_type not in NOTIFIED_EVENTS:
            return
        body = message(self.settings, event_type, view, actor)
        on_loop(functools.partial(self._start, body))

    def _start(self, body: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self.deliver(body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def deliver(self, body: dict[str, Any]) -> bool:
        """POST ``body`` with retries (exponential backoff, capped); True once a 2xx answers."""
        content = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.settings.secret:
            headers[SIGNATURE_HEADER] = signature(self.settings.secret, content)
        delay, problem = self.settings.first_delay_s, ""
        async with httpx.AsyncClient(timeout=self.settings.timeout_s) as client:
            for attempt in range(1, self.settings.attempts + 1):
                try:
                    response = await client.post(self.settings.url, content=content, headers=headers)
                except httpx.HTTPError as error:
                    problem = f"{type(error).__name__}: {error}"
                else:
                    if response.is_success:
                        return True
                    problem = f"HTTP {response.status_code}"
                    if response.status_code < 500 and response.status_code not in (408, 429):
                        break  # the receiver refuses this body: sending it again will not help
                if attempt < self.settings.attempts:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_DELAY_S)
        host = urlsplit(self.settings.url).hostname or ""
        facts = body["governance"]
        log.warning("governed_server: the approvers' webhook at %s failed for request %s: %s",
                    host, facts["request_id"], problem)  # fmt: skip
        failure = {"request_id": facts["request_id"], "event": facts["event"], "host": host,
                   "attempts": attempt, "problem": problem}  # fmt: skip
        try:
            await offload(self.record_failure, failure)
        except Exception:
            log.exception("governed_server: could not record the webhook failure")
        return False
