"""The approvers' webhook, against a real receiver: what it sends, its retries, its failures recorded."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from service_helpers import Api, cell_request  # type: ignore[import-not-found]
from tornado import httpserver, web

SECRET = "webhook-secret-for-tests"


class Receiver:
    """A chat tool's incoming webhook: records what arrives, answers the statuses it is told to."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.server: httpserver.HTTPServer | None = None

    def listen(self) -> None:
        receiver = self

        class Hook(web.RequestHandler):
            def post(self) -> None:
                receiver.received.append((dict(self.request.headers), self.request.body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.set_status(status)
                self.finish("ok")

        self.server = web.Application([("/hook", Hook)]).listen(self.port, address="127.0.0.1")

    async def wait_for(self, count: int, timeout: float = 20) -> None:
        for _ in range(int(timeout * 10)):
            if len(self.received) >= count:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{len(self.received)} of {count} webhook calls arrived")


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Receiver:
    return Receiver(list(getattr(request, "param", [503, 200])))


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], receiver: Receiver) -> dict[str, Any]:
    jp_server_config["GovernedServerApp"].update(
        notify_webhook_url=receiver.url, notify_webhook_secret=SECRET,
        notify_link_base="https://hub.example.com", notify_attempts=3,
    )  # fmt: skip
    return jp_server_config


async def open_request(api: Api, governance: Any) -> dict[str, Any]:
    kernel = ("kernel", governance.service.credentials.mint("kernel-hook-alice", "alice"))
    body = cell_request(
        "!cat /data/cards-4111111111111111.csv", policy_version=governance.service.policy.version
    )
    status, opened = await api(kernel, "POST", "kernel/approvals", body)
    assert status == 201, opened
    return dict(opened)


async def test_a_new_request_reaches_the_webhook_signed_retried_and_without_code(
    api: Api, governance: Any, receiver: Receiver
) -> None:
    receiver.listen()
    opened = await open_request(api, governance)
    await receiver.wait_for(2)  # 503 first: sent again
    headers, raw = receiver.received[-1]
    expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Governance-Signature"] == expected
    body = json.loads(raw)
    facts = body["governance"]
    assert facts["event"] == "approval.requested" and facts["request_id"] == opened["id"]
    assert facts["requester"] == "alice" and facts["rules"] == ["shell-escape"]
    assert facts["link"] == f"https://hub.example.com/hub/user-redirect/lab?governance-request={opened['id']}"
    assert opened["id"] in body["text"] and "<https://hub.example.com/hub/user-redirect/" in body["text"]
    text = raw.decode()
    for secret in ("cat /data", "cards-", "4111", "1111", "analysis/cards.ipynb"):
        assert secret not in text, f"the webhook carried {secret!r}"
    status, _ = await api(
        "bob", "POST", f"approvals/{opened['id']}/decision", {"decision": "deny", "reason": "no"}
    )
    assert status == 200
    await receiver.wait_for(3)
    decided = json.loads(receiver.received[-1][1])["governance"]
    assert (
        decided["event"] == "approval.decided" and decided["actor"] == "bob" and decided["status"] == "denied"
    )


@pytest.mark.parametrize("receiver", [[500]], indirect=True)
async def test_a_webhook_that_keeps_failing_is_an_audit_record(
    api: Api, governance: Any, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.listen()
    opened = await open_request(api, governance)
    await receiver.wait_for(3)  # notify_attempts, then given up
    for _ in range(100):
        status, found = await api("dave", "GET", "audit", params={"event_type": "notify.failed"})
        assert status == 200
        if found["records"]:
            break
        await asyncio.sleep(0.1)
    [record] = found["records"]
    details = record["data"]["details"]
    assert record["data"]["approval_id"] == opened["id"] and record["outcome"] == "failure"
    assert details["attempts"] == 3 and details["problem"] == "HTTP 500" and details["host"] == "127.0.0.1"
