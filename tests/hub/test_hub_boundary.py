"""The team deployment's boundary, tried as an analyst would: a real Hub, real OS users, PostgreSQL.

The governance service runs as its own OS user and owns the store, the key and the checkpoints; the
analyst's server and kernels run as the analyst. Each test tries to get around a control and fails
if the boundary breaks.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import httpx
import pytest
from hubstack import HUB_WITNESS_GRACE_S, PEOPLE, SERVICE_USER, HubStack, hub_python  # type: ignore[import-not-found]
from ws_client import outputs  # type: ignore[import-not-found]

pytestmark = pytest.mark.hub

GATED = "import subprocess\nsubprocess.run(['true'])\nprint('ran after approval')"


def as_analyst(code: str) -> subprocess.CompletedProcess[str]:
    """Run Python as the analyst's OS user (what any cell or login shell of theirs can do)."""
    return subprocess.run(
        ["runuser", "-u", PEOPLE["analyst"], "--", str(hub_python()), "-c", code],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_service_user_owns_the_key_the_checkpoints_and_its_folder(hub: HubStack) -> None:
    import pwd

    owner = pwd.getpwnam(SERVICE_USER).pw_uid
    key = hub.state_dir / "audit-signing-key.pem"
    deadline = time.monotonic() + 30
    while not key.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    for path, mode in ((hub.state_dir, 0o700), (key, 0o600), (hub.state_dir / "checkpoints", 0o700)):
        stat = path.stat()
        assert stat.st_uid == owner, f"{path} belongs to uid {stat.st_uid}, not {SERVICE_USER}"
        assert stat.st_mode & 0o777 == mode, f"{path} is {oct(stat.st_mode & 0o777)}"


@pytest.mark.parametrize(
    "attempt",
    [
        "open({key!r}).read()",
        "import os; os.listdir({checkpoints!r})",
        "open({state!r} + '/forged', 'w').write('x')",
        "open('/proc/{pid}/environ').read()",
    ],
    ids=["read the key", "list checkpoints", "write the service folder", "read the service's env"],
)
def test_the_analyst_os_user_cannot_reach_the_services_secrets(hub: HubStack, attempt: str) -> None:
    pid = subprocess.run(["pgrep", "-u", SERVICE_USER, "-f", "serve --hub"], capture_output=True,
                         text=True, check=False).stdout.split()  # fmt: skip
    assert pid, "the governance service is not running as its own user"
    code = attempt.format(
        key=str(hub.state_dir / "audit-signing-key.pem"), checkpoints=str(hub.state_dir / "checkpoints"),
        state=str(hub.state_dir), pid=pid[0],
    )  # fmt: skip
    result = as_analyst(code)
    assert result.returncode != 0, f"the analyst could: {code}"
    assert "PermissionError" in result.stderr, result.stderr[-500:]


def test_the_analyst_cannot_open_the_store_without_its_password(hub: HubStack) -> None:
    host_and_db = hub.db_url.split("@", 1)[1]
    result = as_analyst(f"import psycopg; psycopg.connect('postgresql://postgres@{host_and_db}')")
    assert result.returncode != 0
    assert "password" in result.stderr.lower(), result.stderr[-500:]


async def test_a_cell_cannot_read_the_key_or_the_servers_hub_token(hub: HubStack, hub_kernel: Any) -> None:
    kernel = await hub_kernel("analyst")
    probe = (
        "import os\n"
        f"try:\n    open({str(hub.state_dir / 'audit-signing-key.pem')!r}).read(); print('KEY READ')\n"
        "except OSError as error:\n    print('key:', type(error).__name__)\n"
        "print('hub token in env:', 'JUPYTERHUB_API_TOKEN' in os.environ)\n"
        "print('db url in env:', 'GOVERNED_DB_URL' in os.environ)"
    )
    shown = outputs(await kernel.finished(kernel.execute(probe)))
    assert "KEY READ" not in shown
    assert "hub token in env: False" in shown and "db url in env: False" in shown, shown


def test_the_analysts_token_cannot_decide_read_the_audit_or_register_others_kernels(hub: HubStack) -> None:
    with hub.service("analyst") as analyst:
        assert analyst.get("audit").status_code == 403
        assert analyst.get("audit/verify").status_code == 403
        assert analyst.get("approvals", params={"status": "pending"}).status_code == 200  # their own only
        with hub.service("approver") as approver:
            mine = approver.post("servers/kernels", json={"kernel_id": "kernel-of-bob-0001"})
            assert mine.status_code == 201, mine.text
        taken = analyst.post("servers/kernels", json={"kernel_id": "kernel-of-bob-0001"})
        assert taken.status_code == 403 and "another user" in taken.json()["message"], taken.text


async def test_the_kernel_credential_grants_nothing_beyond_its_own_kernel(
    hub: HubStack, hub_kernel: Any
) -> None:
    kernel = await hub_kernel("analyst")
    shown = outputs(
        await kernel.finished(kernel.execute("import os\nprint(os.environ['GOVERNED_KERNEL_TOKEN'])"))
    )
    token = shown.strip().splitlines()[-1]
    headers = {"Authorization": f"GovernedKernel {token}"}
    with httpx.Client(base_url=hub.service_api, headers=headers, timeout=30) as as_kernel:
        assert as_kernel.get("audit").status_code in (401, 403)
        assert as_kernel.post("servers/kernels", json={"kernel_id": "another-kernel-0002"}).status_code in (
            401,
            403,
        )
        report = as_kernel.post(f"servers/kernels/{kernel.kernel_id}/report", json={"forwarded": ["x"]})
        assert report.status_code == 403, "a kernel must not pass for its server"
        forged = as_kernel.post(
            "kernel/audit",
            json={"records": [{"event_type": "cell.start", "claimed_user": PEOPLE["approver"]}]},
        )
        assert forged.status_code == 201
    with hub.service("auditor") as auditor:
        records = auditor.get("audit", params={"kernel_id": kernel.kernel_id, "limit": 1000}).json()[
            "records"
        ]
    assert records and {r["user"] for r in records} == {PEOPLE["analyst"]}, "records name the kernel's user"


async def test_a_gated_cell_waits_until_an_approver_approves_then_runs(
    hub: HubStack, hub_kernel: Any
) -> None:
    kernel = await hub_kernel("analyst")
    msg_id = kernel.execute(GATED)
    pending: dict[str, Any] = {}
    with hub.service("approver") as approver, hub.service("analyst") as analyst:
        for _ in range(60):
            listed = approver.get("approvals", params={"status": "pending"}).json()["requests"]
            mine = [r for r in listed if r["kernel_id"] == kernel.kernel_id]
            if mine:
                pending = mine[0]
                break
            await asyncio.sleep(0.5)
        assert pending, "the held cell's request never reached the approvers' queue"
        assert pending["requester"] == PEOPLE["analyst"]
        assert "ran after approval" not in outputs(kernel.seen), "the cell ran before approval"
        own = analyst.post(
            f"approvals/{pending['id']}/decision", json={"decision": "approve", "reason": "me"}
        )
        assert own.status_code == 403, "an analyst approved their own cell"
        decided = approver.post(
            f"approvals/{pending['id']}/decision", json={"decision": "approve", "reason": "checked"}
        )
        assert decided.status_code == 200, decided.text
    shown = outputs(await kernel.finished(msg_id, timeout=90))
    assert "ran after approval" in shown, shown
    with hub.service("auditor") as auditor:
        records = auditor.get("audit", params={"kernel_id": kernel.kernel_id, "limit": 1000}).json()[
            "records"
        ]
        verify = auditor.get("audit/verify")
    kinds = {(r["event_type"], r["user"]) for r in records}
    assert ("request.execute", PEOPLE["analyst"]) in kinds, "the server recorded the cell as its sender"
    assert ("approval.decided", PEOPLE["approver"]) in kinds, sorted(kinds)
    [decided] = [r for r in records if r["event_type"] == "approval.decided"]
    authority = decided["data"]["details"]["authority"]  # the credential behind the decision
    assert authority["hub_scopes"] == ["custom:governance:approve"] and authority["hub_token_id"], authority
    assert "card-data-approvers" in authority["groups"], authority
    assert verify.status_code == 200 and verify.json()["valid"], verify.text


async def test_ordinary_cells_raise_no_integrity_alert(hub: HubStack, hub_kernel: Any) -> None:
    """Both witnesses of each cell arrive, in whichever order: the kernel's start record at once,
    the single-user server's report of the forward a second later. No alert once the grace passed."""
    kernel = await hub_kernel("analyst")
    for n in range(5):
        shown = outputs(await kernel.finished(kernel.execute(f"print('cell', {n} * 7)")))
        assert f"cell {n * 7}" in shown, shown
    await asyncio.sleep(HUB_WITNESS_GRACE_S + 6)  # past the grace and the service's next sweep (5 s)
    with hub.service("auditor") as auditor:
        records = auditor.get("audit", params={"kernel_id": kernel.kernel_id, "limit": 1000}).json()[
            "records"
        ]
    kinds = [r["event_type"] for r in records]
    assert kinds.count("cell.start") == 5 and kinds.count("request.execute") == 5, kinds
    alerts = [r["data"]["details"] for r in records if r["event_type"].startswith("integrity.")]
    assert not alerts, alerts


async def test_the_approvers_panel_calls_reach_the_service_through_their_own_server(hub: HubStack) -> None:
    with hub.server("approver") as server:
        me = server.get("governance/api/me").json()
    assert me["username"] == PEOPLE["approver"] and "approver" in me["roles"], me
    with hub.server("analyst") as server:
        me = server.get("governance/api/me").json()
        assert me["roles"] == ["analyst"], me
        assert server.get("governance/api/audit").status_code == 403


def test_a_stopped_server_loses_its_kernel_credentials(hub: HubStack) -> None:
    with hub.service("auditor") as auditor:
        registered = auditor.post("servers/kernels", json={"kernel_id": "dave-kernel-0003"})
        assert registered.status_code == 201
        token = registered.json()["kernel_token"]
        # dave has no server running: the service's watch of the Hub revokes it within its interval
        headers = {"Authorization": f"GovernedKernel {token}"}
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline:
            status = httpx.post(
                hub.service_api + "kernel/audit", headers=headers, timeout=30,
                json={"records": [{"event_type": "cell.start"}]},
            ).status_code  # fmt: skip
            if status == 403:
                break
            time.sleep(2)
    assert status == 403, "a kernel credential outlived its user's server"


async def test_while_the_service_is_unreachable_cells_wait_then_go_on_without_a_restart(
    hub: HubStack, hub_kernel: Any, service_pid: Any
) -> None:
    import os
    import signal

    kernel = await hub_kernel("analyst")
    assert "before" in outputs(await kernel.finished(kernel.execute("print('before')")))
    pid = service_pid()
    os.kill(pid, signal.SIGSTOP)  # unreachable: connections hang, nothing answers
    try:
        msg_id = kernel.execute("print('during the outage')")
        with pytest.raises(asyncio.TimeoutError):
            await kernel.finished(msg_id, timeout=12)
        waiting = outputs([m for m in kernel.seen if m["parent_header"].get("msg_id") == msg_id])
        assert "during the outage" not in waiting, "a cell ran while nothing could record it"
        assert "governance service is not reachable" in waiting, waiting
    finally:
        os.kill(pid, signal.SIGCONT)
    shown = outputs(await kernel.finished(msg_id, timeout=90))
    assert "during the outage" in shown, shown
    assert "after" in outputs(await kernel.finished(kernel.execute("print('after')"), timeout=60))
    with hub.service("auditor") as auditor:
        records = auditor.get("audit", params={"kernel_id": kernel.kernel_id, "limit": 1000}).json()
    sent = [r for r in records["records"] if r["event_type"] == "request.execute"]
    assert any("during the outage" in r["data"]["code"] for r in sent), (
        "the held cell was recorded by the server"
    )


def test_info_says_that_approvers_need_both_the_policy_and_the_hub_scope(hub: HubStack) -> None:
    import sys
    from pathlib import Path

    cli = Path(sys.executable).parent / "jupyter-governance"
    url = f"{hub.url}/services/governance/"
    result = subprocess.run(
        [str(cli), "info", "--url", url, "--token", hub.token("auditor")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    roles = [line for line in result.stdout.splitlines() if line.startswith("roles")]
    assert roles and "both needed" in roles[0] and "custom:governance:approve" in roles[0], result.stdout
    with hub.service("approver") as approver:
        assert approver.get("me").json()["hub_scopes_missing"] == []
    narrow = hub.token("approver", scopes=["access:services!service=governance"])
    with httpx.Client(base_url=hub.service_api, headers={"Authorization": f"token {narrow}"}) as client:
        me = client.get("me").json()
    assert me["roles"] == [] or "approver" not in me["roles"], me
    assert me["hub_scopes_missing"] == ["custom:governance:approve"], me


async def events_of(url: str, token: str) -> Any:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    return await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))


async def next_event(ws: Any, schema_part: str, timeout: float = 20) -> dict[str, Any]:
    import json

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        raw = await asyncio.wait_for(ws.read_message(), max(0.1, deadline - loop.time()))
        assert raw is not None, "the event stream closed"
        event = json.loads(raw)
        if schema_part in event.get("schema_id", ""):
            return dict(event)


def open_request_as(hub: HubStack, who: str, kernel_id: str) -> dict[str, Any]:
    """A request of ``who``'s, opened through the service's kernel API (as their kernel would)."""
    import hashlib

    with hub.service(who) as person:
        token = person.post("servers/kernels", json={"kernel_id": kernel_id}).json()["kernel_token"]
        version = person.get("me").json()["policy"]["version"]
    code = "!ls /srv/data"
    body = {"cell_hash": hashlib.sha256(code.encode()).hexdigest(), "code": code, "policy_version": version,
            "rules": [{"id": "shell-escape", "action": "approve"}]}  # fmt: skip
    headers = {"Authorization": f"GovernedKernel {token}"}
    response = httpx.post(hub.service_api + "kernel/approvals", json=body, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_push_updates_reach_the_approvers_lab_and_analysts_see_only_their_own(hub: HubStack) -> None:
    with hub.server("approver") as server:  # the panel's first call: the relay subscribes as bob
        assert server.get("governance/api/me").status_code == 200
    ws_base = hub.url.replace("http://", "ws://")
    in_bobs_lab = await events_of(
        f"{ws_base}/user/{PEOPLE['approver']}/api/events/subscribe", hub.token("approver")
    )
    analysts_stream = await events_of(
        hub.service_api.replace("http://", "ws://") + "events", hub.token("analyst")
    )
    try:
        await asyncio.sleep(2)  # the relay's subscription is up
        carols = open_request_as(hub, "approver2", "carol-kernel-0004")
        pushed = await next_event(in_bobs_lab, "approval")
        assert pushed["request_id"] == carols["id"] and pushed["requester"] == PEOPLE["approver2"], pushed
        anas = open_request_as(hub, "analyst", "ana-kernel-0005")
        seen = await next_event(analysts_stream, "approval")
        assert seen["data"]["request_id"] == anas["id"], "the analyst saw another person's request first"
        assert (await next_event(in_bobs_lab, "approval"))["request_id"] == anas["id"]
    finally:
        in_bobs_lab.close()
        analysts_stream.close()
