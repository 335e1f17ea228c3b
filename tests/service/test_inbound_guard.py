"""The server is the boundary on the way in: every request a client sends to a kernel is read, recorded
and admitted by the server, whatever the kernel does with it and whatever the client shows.

Written as the attacks: a client that ignores the kernel's status and sends a gated cell anyway,
code hidden in ``user_expressions``, a header that names someone else, debug and subshell requests,
comms to any target. pytest-jupyter's echo kernel answers every cell it receives by printing it back:
what the server holds, the kernel never saw.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from service_helpers import TOKENS, Api  # type: ignore[import-not-found]
from ws_client import V1, KernelSocket, texts  # type: ignore[import-not-found]

PROTOCOLS = [V1, None]


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    jp_server_config["GovernedServerApp"]["witness_grace_seconds"] = 0.2
    return jp_server_config


def msg_id_of(record: dict[str, Any]) -> str:
    return str(record["data"]["details"].get("msg_id", ""))


async def records(api: Api, **params: Any) -> list[dict[str, Any]]:
    status, listing = await api("dave", "GET", "audit", params={"limit": 500, **params})
    assert status == 200, listing
    return sorted(listing["records"], key=lambda record: int(record["seq"]))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_every_cell_is_recorded_by_the_server_as_its_sender_before_the_kernel_runs_it(
    open_kernel: Any, api: Api, protocol: str | None
) -> None:
    kernel = await open_kernel("alice", protocol)
    msg_id = kernel.execute("print('hello')", username="mallory")  # the header names someone else
    answers = await kernel.finished(msg_id)
    assert "print('hello')" in texts(answers), answers  # the echo kernel got it
    found = [
        r
        for r in await records(api, event_type="request.execute")
        if r["data"]["details"]["msg_id"] == msg_id
    ]
    assert len(found) == 1, found
    record = found[0]
    assert record["user"] == "alice"
    assert record["data"]["code"] == "print('hello')"
    assert record["origin"]["kernel_id"] == kernel.kernel_id
    assert record["data"]["details"]["decision"]["decision"] == "allow"


async def test_a_governed_kernel_runs_what_the_server_forwards(
    governed_kernelspec: None, open_kernel: Any, api: Api
) -> None:
    kernel = await open_kernel("alice", V1, "governed-python")
    msg_id = kernel.execute("print(6 * 7)")
    answers = await kernel.finished(msg_id, timeout=60)
    assert "42" in texts(answers), answers
    # The server's record first (before the kernel saw the cell), then the kernel's own, as witness.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        logged = [r["event_type"] for r in await records(api) if msg_id_of(r) == msg_id]
        if len(logged) >= 3 or loop.time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert logged == ["request.execute", "cell.start", "cell.end"], logged


async def pending_request(api: Api, code: str, timeout: float = 10) -> dict[str, Any]:
    """The pending approval request for ``code``, as an approver sees it (waits for it to appear)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status, listing = await api("bob", "GET", "approvals", params={"status": "pending"})
        assert status == 200, listing
        found = [r for r in listing["requests"] if r["code"] == code]
        if found:
            return dict(found[0])
        assert loop.time() < deadline, f"no pending request for {code!r}"
        await asyncio.sleep(0.1)


async def nothing_reaches_the_kernel(kernel: KernelSocket, code: str, seconds: float = 1.5) -> None:
    """For ``seconds``, the echo kernel prints nothing of ``code`` (it would, had it received it)."""
    try:
        await kernel.until(lambda m: code in texts([m]) and m["msg_type"] == "stream", timeout=seconds)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"the kernel received {code!r} while the server should hold it")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_gated_cell_is_held_by_the_server_until_someone_else_approves_it(
    open_kernel: Any, api: Api, protocol: str | None
) -> None:
    """The client ignores the kernel's status and sends ``!ls`` straight to the websocket."""
    kernel = await open_kernel("alice", protocol)
    code = "!ls /srv/cards"
    msg_id = kernel.execute(code)
    await nothing_reaches_the_kernel(kernel, code)
    waiting = [
        m
        for m in kernel.seen
        if m["msg_type"] == "display_data" and m["parent_header"].get("msg_id") == msg_id
    ]
    assert waiting and "Waiting for approval" in waiting[0]["content"]["data"]["text/plain"]
    request = await pending_request(api, code)
    assert request["requester"] == "alice" and request["kernel_id"] == kernel.kernel_id
    status, refused = await api("alice", "POST", f"approvals/{request['id']}/decision",
                                {"decision": "approve", "reason": "mine"})  # fmt: skip
    assert status == 403, refused
    status, _ = await api("bob", "POST", f"approvals/{request['id']}/decision",
                          {"decision": "approve", "reason": "read-only listing"})  # fmt: skip
    assert status == 200
    answers = await kernel.finished(msg_id)
    assert code in texts(answers), answers  # forwarded once approved: the echo kernel got it
    assert "Approved by bob: read-only listing" in texts(answers)
    mine = [r for r in await records(api) if msg_id_of(r) == msg_id]
    assert [(r["event_type"], r["data"]["details"]["verdict"]) for r in mine] == [("request.execute", "gate")]


@pytest.mark.parametrize(
    ("decision", "ename"), [("deny", "ApprovalDenied"), ("interrupt", "KeyboardInterrupt")]
)
async def test_a_held_cell_that_is_denied_or_interrupted_never_reaches_the_kernel(
    open_kernel: Any, api: Api, jp_fetch: Any, decision: str, ename: str
) -> None:
    kernel = await open_kernel("alice", V1)
    code = f"!echo {decision}-me"
    msg_id = kernel.execute(code)
    request = await pending_request(api, code)
    if decision == "deny":
        status, _ = await api("bob", "POST", f"approvals/{request['id']}/decision",
                              {"decision": "deny", "reason": "no shell"})  # fmt: skip
        assert status == 200
    else:
        await jp_fetch("api", "kernels", kernel.kernel_id, "interrupt", method="POST", body="",
                       headers={"Authorization": f"token {TOKENS['alice']}"})  # fmt: skip
    answers = await kernel.finished(msg_id)
    reply = next(m for m in answers if m["msg_type"] == "execute_reply")
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == ename, reply
    assert any(m["msg_type"] == "error" for m in answers)
    await nothing_reaches_the_kernel(kernel, code, 1.0)
    _, after = await api("bob", "GET", f"approvals/{request['id']}")
    assert after["status"] == ("denied" if decision == "deny" else "cancelled")
    refused = [r for r in await records(api, event_type="request.refused") if msg_id_of(r) == msg_id]
    assert len(refused) == 1 and refused[0]["outcome"] == "failure"


async def test_later_requests_wait_behind_a_held_cell(open_kernel: Any, api: Api) -> None:
    kernel = await open_kernel("alice", V1)
    held = kernel.execute("!echo first")
    second = kernel.execute("print('second')")
    await nothing_reaches_the_kernel(kernel, "print('second')")
    request = await pending_request(api, "!echo first")
    await api("bob", "POST", f"approvals/{request['id']}/decision", {"decision": "deny", "reason": "no"})
    await kernel.finished(held)
    answers = await kernel.finished(second)
    assert "print('second')" in texts(answers)


async def test_a_cell_the_policy_denies_is_refused_by_the_server(open_kernel: Any, api: Api) -> None:
    kernel = await open_kernel("alice", V1)
    msg_id = kernel.execute("import governed_kernel")
    answers = await kernel.finished(msg_id)
    reply = next(m for m in answers if m["msg_type"] == "execute_reply")
    assert reply["content"]["ename"] == "PolicyDenied"
    assert "import governed_kernel" not in texts([m for m in answers if m["msg_type"] == "stream"])
    found = [r for r in await records(api, event_type="request.execute") if msg_id_of(r) == msg_id]
    assert found[0]["outcome"] == "failure" and found[0]["data"]["details"]["verdict"] == "refuse"


async def test_code_in_user_expressions_is_classified_and_recorded(open_kernel: Any, api: Api) -> None:
    kernel = await open_kernel("alice", V1)
    expressions = {"x": "__import__('subprocess').getoutput('id')"}
    msg_id = kernel.execute("pass", content={"user_expressions": expressions})
    await nothing_reaches_the_kernel(kernel, "pass", 1.0)
    found = [r for r in await records(api, event_type="request.execute") if msg_id_of(r) == msg_id]
    assert found and "getoutput('id')" in found[0]["data"]["code"]
    assert found[0]["data"]["details"]["verdict"] == "gate"
    request = await pending_request(api, found[0]["data"]["code"])
    await api("bob", "POST", f"approvals/{request['id']}/decision", {"decision": "deny", "reason": "no"})
    await kernel.finished(msg_id)


@pytest.mark.parametrize(
    ("channel", "msg_type", "content", "kind"),
    [
        ("control", "debug_request", {"type": "request", "seq": 1, "command": "evaluate"}, "debug"),
        ("control", "create_subshell_request", {}, "subshell"),
        ("shell", "comm_open", {"comm_id": "c1", "target_name": "my.backdoor", "data": {}}, "comm_open"),
        ("shell", "frobnicate_request", {"code": "import os"}, "unknown"),
    ],
)
async def test_requests_the_policy_does_not_allow_are_refused_and_recorded(
    open_kernel: Any, api: Api, channel: str, msg_type: str, content: dict[str, Any], kind: str
) -> None:
    kernel = await open_kernel("alice", V1)
    msg_id = kernel.send(msg_type, content, channel=channel)
    notice = await kernel.until(lambda m: m["parent_header"].get("msg_id") == msg_id, timeout=10)
    assert "RequestRefused" in texts(notice[-1:]), notice
    found = [r for r in await records(api, event_type=f"request.{kind}") if msg_id_of(r) == msg_id]
    assert len(found) == 1 and found[0]["outcome"] == "failure" and found[0]["user"] == "alice"


async def test_a_subshell_cell_is_refused_and_a_widget_comm_is_recorded(open_kernel: Any, api: Api) -> None:
    kernel = await open_kernel("alice", V1)
    sub = kernel.execute("print('beside the shell')", header={"subshell_id": "s-1"})
    reply = next(m for m in await kernel.finished(sub) if m["msg_type"] == "execute_reply")
    assert reply["content"]["status"] == "error"
    comm = kernel.send("comm_open", {"comm_id": "w1", "target_name": "jupyter.widget", "data": {"v": 1}})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not [r for r in await records(api, event_type="request.comm_open") if msg_id_of(r) == comm]:
        assert loop.time() < deadline, "the comm_open was not recorded"
        await asyncio.sleep(0.1)


async def test_an_unreadable_message_is_dropped_and_the_connection_goes_on(open_kernel: Any) -> None:
    kernel = await open_kernel("alice", V1)
    kernel.ws.write_message(b"\x02\x00\x00\x00\x00\x00\x00\x00garbage", binary=True)
    msg_id = kernel.execute("print('still here')")
    assert "still here" in texts(await kernel.finished(msg_id))


async def answer_prompt(kernel: KernelSocket, msg_id: str, value: str) -> list[dict[str, Any]]:
    prompt = await kernel.until(lambda m: m["msg_type"] == "input_request", timeout=60)
    kernel.send("input_reply", {"value": value}, channel="stdin")
    return [*prompt, *(await kernel.finished(msg_id))]


async def test_what_a_user_types_at_a_prompt_is_recorded_masked_and_a_password_withheld(
    governed_kernelspec: None, open_kernel: Any, api: Api
) -> None:
    kernel = await open_kernel("alice", V1, "governed-python")
    typed = kernel.execute("card = input('card: ')", allow_stdin=True)
    await answer_prompt(kernel, typed, "4111 1111 1111 1111")
    secret = kernel.execute("import getpass\npin = getpass.getpass('pin: ')", allow_stdin=True)
    await answer_prompt(kernel, secret, "hunter2")
    inputs = [r["data"]["details"]["input"] for r in await records(api, event_type="request.input")]
    assert inputs[-2] == "**** **** **** 1111"
    assert inputs[-1] == "[withheld: the prompt asked for a password]"
    assert "hunter2" not in json.dumps(await records(api))


async def test_a_governed_kernel_runs_a_held_cell_with_the_servers_approval_only(
    governed_kernelspec: None, open_kernel: Any, api: Api
) -> None:
    kernel = await open_kernel("alice", V1, "governed-python")
    code = "!echo approved-by-the-server"
    msg_id = kernel.execute(code)
    request = await pending_request(api, code)
    await api("bob", "POST", f"approvals/{request['id']}/decision", {"decision": "approve", "reason": "ok"})
    answers = await kernel.finished(msg_id)
    assert "approved-by-the-server" in texts([m for m in answers if m["msg_type"] == "stream"]), answers
    _, listing = await api("bob", "GET", "approvals")
    same = [r for r in listing["requests"] if r["code"] == code]
    assert len(same) == 1, "the kernel opened a request of its own"
    assert same[0]["uses"] == 1  # the kernel used the server's approval, once


async def test_a_kernel_whose_governor_was_switched_off_is_still_gated_and_recorded_by_the_server(
    governed_kernelspec: None, open_kernel: Any, api: Api, governance: Any
) -> None:
    """The attack of issue 15: one (here: approved) cell replaces the governor's execute method, so
    the kernel would run every later cell without classification, approval or record."""
    kernel = await open_kernel("alice", V1, "governed-python")
    hidden = (
        "import sys\n"
        "g = sys.modules['governed_kernel.governor']\n"
        "async def run_anything(self, cell, run):\n"
        "    return await run()\n"
        "g.Governor.execute = run_anything"
    )
    patch = f"exec(bytes.fromhex({hidden.encode().hex()!r}).decode())"  # dynamic code: approvable
    msg_id = kernel.execute(patch)
    request = await pending_request(api, patch)
    await api("bob", "POST", f"approvals/{request['id']}/decision", {"decision": "approve", "reason": "test"})
    reply = next(m for m in await kernel.finished(msg_id) if m["msg_type"] == "execute_reply")
    assert reply["content"]["status"] == "ok", reply
    shell = kernel.execute("!echo pwned")
    await asyncio.sleep(1.0)
    assert "pwned" not in texts([m for m in kernel.seen if m["msg_type"] == "stream"])
    held = await pending_request(api, "!echo pwned")
    await api("bob", "POST", f"approvals/{held['id']}/decision", {"decision": "deny", "reason": "no"})
    reply = next(m for m in await kernel.finished(shell) if m["msg_type"] == "execute_reply")
    assert reply["content"]["ename"] == "ApprovalDenied"
    assert reply["content"]["evalue"].startswith("denied by bob: no (request ")
    quiet = kernel.execute("print('ungoverned?')")
    await kernel.finished(quiet)
    logged = [r for r in await records(api) if msg_id_of(r) == quiet]
    # The kernel's governor is off (no cell.start of its own), the server's record is there.
    assert [r["event_type"] for r in logged] == ["request.execute"], logged
    assert logged[0]["user"] == "alice"
    # ... and once the grace period is over, the missing witness is an integrity alert.
    await asyncio.sleep(0.5)
    governance.service.settle_witnesses()
    alerts = [r for r in await records(api, event_type="integrity.witness_missing") if msg_id_of(r) == quiet]
    assert len(alerts) == 1 and alerts[0]["outcome"] == "failure", alerts


async def test_a_cell_sent_to_the_kernel_around_the_server_is_an_integrity_alert(
    governed_kernelspec: None, open_kernel: Any, api: Api, jp_serverapp: Any
) -> None:
    """A local process with the kernel's connection file speaks to its shell socket directly."""
    kernel = await open_kernel("alice", V1, "governed-python")
    direct = jp_serverapp.kernel_manager.get_kernel(kernel.kernel_id).client()
    direct.start_channels()
    try:
        msg_id = direct.execute("x = 'around the server'")
        reply = await direct.get_shell_msg(timeout=60)
        assert reply["parent_header"]["msg_id"] == msg_id
    finally:
        direct.stop_channels()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not [
        r for r in await records(api, event_type="integrity.unguarded_request") if msg_id_of(r) == msg_id
    ]:
        assert loop.time() < deadline, "no alert for a request the server never forwarded"
        await asyncio.sleep(0.2)
    start = [r for r in await records(api, event_type="cell.start") if msg_id_of(r) == msg_id]
    assert start and start[0]["data"]["details"]["guard"] == "none"


async def test_a_msg_id_holding_a_card_number_is_masked_and_still_witnessed(
    governed_kernelspec: None, open_kernel: Any, api: Api, governance: Any
) -> None:
    """Clients choose msg_ids: one with a card number in it is stored masked by both witnesses, and
    the two records still match (no false alarm, no number in the log)."""
    kernel = await open_kernel("alice", V1, "governed-python")
    msg_id = "m-4111111111111111-1"
    kernel.execute("print(6 * 7)", header={"msg_id": msg_id})
    answers = await kernel.finished(msg_id, timeout=60)
    assert "42" in texts(answers), answers
    await asyncio.sleep(0.5)  # past the grace period
    governance.service.settle_witnesses()
    logged = [r for r in await records(api) if "-1" in msg_id_of(r) and msg_id_of(r).startswith("m-")]
    kinds = [r["event_type"] for r in logged]
    assert kinds == ["request.execute", "cell.start", "cell.end"], kinds  # and no integrity alert
    assert all("4111111111111111" not in json.dumps(r) for r in logged), logged


async def test_a_cell_aborted_after_an_error_is_told_apart_from_a_missing_witness(
    governed_kernelspec: None, open_kernel: Any, api: Api, governance: Any
) -> None:
    kernel = await open_kernel("alice", V1, "governed-python")
    failing = kernel.execute("raise ValueError('first')")
    queued = kernel.execute("print('never runs')")
    await kernel.finished(failing)
    reply = next(m for m in await kernel.finished(queued) if m["msg_type"] == "execute_reply")
    assert reply["content"]["status"] == "aborted"
    await asyncio.sleep(0.5)
    governance.service.settle_witnesses()
    kinds = [r["event_type"] for r in await records(api) if msg_id_of(r) == queued]
    assert kinds == ["request.execute", "request.aborted"], kinds
