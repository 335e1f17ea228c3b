"""The kernel audit stream (``kernel/audit/stream``, a WebSocket): same contract as ``POST kernel/audit``.

Attacks tried: no credential, a person's token, a forged or revoked credential, a browser page (an
``Origin``), malformed and oversized messages, records that break the schema; and the kernel
client's behaviour: stream used when present, HTTP when the stream cannot be opened.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from service_helpers import TOKENS  # type: ignore[import-not-found]
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from governed_kernel import audit_stream
from governed_kernel.client import GovernanceClient, GovernanceUnavailable, ServiceConfig
from governed_server.service.handlers import kernel_stream

PAN = "4111111111111111"
T = TypeVar("T")


@pytest.fixture
def api_base(jp_http_port: int, jp_base_url: str, governance: Any, http_server_client: Any) -> str:
    """The API's URL on the test server (``http_server_client`` makes it listen)."""
    return f"http://localhost:{jp_http_port}{jp_base_url}governance/api/"


async def connect(api_base: str, authorization: str, **headers: str) -> WebSocketClientConnection:
    url = api_base.replace("http://", "ws://") + "kernel/audit/stream"
    request = HTTPRequest(url, headers={"Authorization": authorization, **headers})
    return await websocket_connect(request)


async def exchange(connection: WebSocketClientConnection, message: Any) -> dict[str, Any]:
    await connection.write_message(message if isinstance(message, str) else json.dumps(message))
    raw = await connection.read_message()
    assert raw is not None, f"closed: {connection.close_code} {connection.close_reason}"
    answer: dict[str, Any] = json.loads(raw)
    return answer


def stored_cells(governance: Any, kernel_id: str) -> list[dict[str, Any]]:
    with governance.service.store.read() as connection:
        rows = connection.exec_driver_sql(
            "SELECT body FROM audit_records WHERE kernel_id = ? ORDER BY seq"
            if governance.service.store.dialect == "sqlite"
            else "SELECT body FROM audit_records WHERE kernel_id = %(k)s ORDER BY seq",
            (kernel_id,) if governance.service.store.dialect == "sqlite" else {"k": kernel_id},
        )
        return [json.loads(row[0]) for row in rows]


async def test_records_are_stored_in_order_and_attributed_to_the_credential(
    api_base: str, governance: Any
) -> None:
    token = governance.service.credentials.mint("k-stream", "alice")
    connection = await connect(api_base, f"GovernedKernel {token}")
    try:
        first = await exchange(connection, {"id": 1, "records": [
            {"event_type": "cell.start", "cell_id": "c1", "code": "x = 1", "claimed_user": "ci"},
        ]})  # fmt: skip
        second = await exchange(connection, {"id": 2, "records": [
            {"event_type": "cell.end", "cell_id": "c1", "output": f"card {PAN}", "masking": {}},
            {"event_type": "cell.start", "cell_id": "c2", "code": "y = 2"},
        ]})  # fmt: skip
    finally:
        connection.close()
    assert first["id"] == 1 and first["status"] == 201 and len(first["records"]) == 1
    assert second["id"] == 2 and second["status"] == 201 and len(second["records"]) == 2
    seqs = [r["seq"] for r in first["records"] + second["records"]]
    assert seqs == sorted(seqs)
    bodies = stored_cells(governance, "k-stream")
    assert [(b["event_type"], b["resource"]["cell_id"]) for b in bodies] == [
        ("cell.start", "c1"), ("cell.end", "c1"), ("cell.start", "c2"),
    ]  # fmt: skip
    assert {b["user"] for b in bodies} == {"alice"}
    assert bodies[0]["claimed_user"] == "ci"
    assert PAN not in json.dumps(bodies), "the server masks what a kernel sends, whatever the kernel did"


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        ("", 401),
        (f"token {TOKENS['alice']}", 401),  # a person's token is not a kernel credential
        ("GovernedKernel not-a-real-credential", 403),
    ],
)
async def test_the_upgrade_needs_a_live_kernel_credential(
    api_base: str, authorization: str, status: int
) -> None:
    with pytest.raises(HTTPClientError) as refused:
        await connect(api_base, authorization)
    assert refused.value.code == status


async def test_a_browser_page_cannot_open_the_stream(api_base: str, governance: Any) -> None:
    token = governance.service.credentials.mint("k-origin", "alice")
    with pytest.raises(HTTPClientError) as refused:
        await connect(api_base, f"GovernedKernel {token}", Origin=api_base.rstrip("/"))
    assert refused.value.code == 403
    assert stored_cells(governance, "k-origin") == []


async def test_malformed_messages_are_answered_and_store_nothing(api_base: str, governance: Any) -> None:
    token = governance.service.credentials.mint("k-bad", "alice")
    connection = await connect(api_base, f"GovernedKernel {token}")
    try:
        not_json = await exchange(connection, "{not json")
        not_object = await exchange(connection, "[1, 2]")
        no_records = await exchange(connection, {"id": 7})
        bad_type = await exchange(connection, {"id": 8, "records": [{"event_type": "shell.rm"}]})
        bad_hash = await exchange(
            connection, {"id": 9, "records": [{"event_type": "cell.start", "cell_hash": "zz"}]}
        )
        extra_field = await exchange(
            connection, {"id": 10, "records": [{"event_type": "cell.start", "user": "bob"}]}
        )
        still_open = await exchange(connection, {"id": 11, "records": [{"event_type": "cell.start"}]})
    finally:
        connection.close()
    assert not_json["status"] == 400 and "JSON" in not_json["message"]
    assert not_object["status"] == 400
    assert no_records["status"] == 400 and no_records["id"] == 7 and "records" in no_records["message"]
    assert bad_type["status"] == 400 and "records/0/event_type" in bad_type["message"]
    assert bad_hash["status"] == 400 and bad_hash["id"] == 9
    assert extra_field["status"] == 400, "a kernel cannot name the actor"
    assert still_open["status"] == 201
    assert [b["event_type"] for b in stored_cells(governance, "k-bad")] == ["cell.start"]


async def test_an_oversized_message_closes_the_stream(api_base: str, governance: Any) -> None:
    token = governance.service.credentials.mint("k-big", "alice")
    connection = await connect(api_base, f"GovernedKernel {token}")
    big = json.dumps({"id": 1, "records": [{"event_type": "cell.end", "output": "x" * (9 << 20)}]})
    with contextlib.suppress(WebSocketClosedError):  # the server may close while it is still sent
        await connection.write_message(big)
    assert await connection.read_message() is None
    assert connection.close_code in (1009, None)  # message too big (or closed before the code came)
    assert stored_cells(governance, "k-big") == []


async def test_a_revoked_credential_stops_the_stream(
    api_base: str, governance: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel_stream, "CREDENTIAL_RECHECK_S", 0.0)
    token = governance.service.credentials.mint("k-revoked", "alice")
    connection = await connect(api_base, f"GovernedKernel {token}")
    assert (await exchange(connection, {"id": 1, "records": [{"event_type": "cell.start"}]}))["status"] == 201
    governance.service.credentials.revoke("k-revoked")
    answer = await exchange(connection, {"id": 2, "records": [{"event_type": "cell.start"}]})
    assert answer["status"] == 403 and "revoked" in answer["message"]
    assert await connection.read_message() is None
    assert connection.close_code == 4403
    assert len(stored_cells(governance, "k-revoked")) == 1


# -- the kernel's client ------------------------------------------------------------------------------


async def as_a_kernel(scenario: Coroutine[Any, Any, T]) -> T:
    """Run ``scenario`` on its own thread and event loop, as in a kernel process: the kernel's audit
    stream blocks its loop during an exchange, and the server under test runs on this one."""
    return await asyncio.to_thread(asyncio.run, scenario)


async def test_the_kernel_client_uses_the_stream(api_base: str, governance: Any) -> None:
    token = governance.service.credentials.mint("k-client", "alice")
    client = GovernanceClient(ServiceConfig(url=api_base, token=token), stream=True)

    async def scenario() -> list[dict[str, Any]]:
        try:
            records = [[{"event_type": "cell.start", "cell_id": f"c{i}"}] for i in range(3)]
            answers = [await client.send_audit(batch) for batch in records]
            assert client.stream is not None and client.stream._connection is not None
            assert client._client is None, "no HTTP client was needed"
            return answers
        finally:
            await client.aclose()

    answers = await as_a_kernel(scenario())
    assert [len(a["records"]) for a in answers] == [1, 1, 1]
    assert [b["resource"]["cell_id"] for b in stored_cells(governance, "k-client")] == ["c0", "c1", "c2"]


async def test_batches_on_the_stream_are_answered_in_order_even_when_read_together(
    api_base: str, governance: Any
) -> None:
    """The kernel puts an end-record batch and the next start record on the stream before reading
    either answer; both answers then arrive in one read and each must reach its own batch."""
    token = governance.service.credentials.mint("k-pipelined", "alice")
    client = GovernanceClient(ServiceConfig(url=api_base, token=token), stream=True, timeout=5)

    async def scenario() -> list[list[int]]:
        try:
            first = client.start_audit([{"event_type": "cell.end", "cell_id": "c1"}])
            second = client.start_audit([{"event_type": "cell.start", "cell_id": "c2"}])
            assert first is not None and second is not None
            time.sleep(0.5)  # both answers are in the socket by now
            answers = [client.finish_audit(first), client.finish_audit(second)]
            return [[r["seq"] for r in answer["records"]] for answer in answers]
        finally:
            await client.aclose()

    (first_seq,), (second_seq,) = await as_a_kernel(scenario())
    assert first_seq < second_seq
    assert [b["resource"]["cell_id"] for b in stored_cells(governance, "k-pipelined")] == ["c1", "c2"]


async def test_the_kernel_client_falls_back_to_http_without_the_stream(
    api_base: str, governance: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_stream, "STREAM_PATH", "kernel/no-such-stream")  # an older server
    token = governance.service.credentials.mint("k-http", "alice")
    client = GovernanceClient(ServiceConfig(url=api_base, token=token), stream=True)

    async def scenario() -> dict[str, Any]:
        try:
            answer = await client.send_audit([{"event_type": "cell.start", "cell_id": "c1"}])
            assert client.stream is not None and client.stream._connection is None
            return answer
        finally:
            await client.aclose()

    answer = await as_a_kernel(scenario())
    assert answer["records"][0]["seq"] > 0
    assert [b["resource"]["cell_id"] for b in stored_cells(governance, "k-http")] == ["c1"]


async def test_the_kernel_client_fails_closed_on_refusals(
    api_base: str, governance: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel_stream, "CREDENTIAL_RECHECK_S", 0.0)
    token = governance.service.credentials.mint("k-closed", "alice")
    client = GovernanceClient(ServiceConfig(url=api_base, token=token), stream=True)

    async def send() -> dict[str, Any]:
        return await client.send_audit([{"event_type": "cell.start"}])

    await as_a_kernel(send())
    governance.service.credentials.revoke("k-closed")
    with pytest.raises(GovernanceUnavailable, match="revoked"):
        await as_a_kernel(send())
    with pytest.raises(GovernanceUnavailable):  # and stays refused (HTTP says the same)
        await as_a_kernel(send())
    await as_a_kernel(client.aclose())
    forged = GovernanceClient(ServiceConfig(url=api_base, token="forged"), stream=True)
    with pytest.raises(GovernanceUnavailable, match="403"):
        await as_a_kernel(forged.send_audit([{"event_type": "cell.start"}]))
    await as_a_kernel(forged.aclose())
    assert len(stored_cells(governance, "k-closed")) == 1


async def test_the_kernel_client_reconnects_after_the_connection_dropped(
    api_base: str, governance: Any
) -> None:
    token = governance.service.credentials.mint("k-drop", "alice")
    client = GovernanceClient(ServiceConfig(url=api_base, token=token), stream=True)

    async def scenario() -> dict[str, Any]:
        try:
            await client.send_audit([{"event_type": "cell.start", "cell_id": "c1"}])
            assert client.stream is not None and client.stream._connection is not None
            dropped = client.stream._connection
            dropped.socket.shutdown(socket.SHUT_RDWR)  # the network (or a server restart) drops it
            answer = await client.send_audit([{"event_type": "cell.start", "cell_id": "c2"}])
            assert client.stream._connection is not None and client.stream._connection is not dropped
            assert client._client is None, "reconnected on the stream, not over HTTP"
            return answer
        finally:
            await client.aclose()

    answer = await as_a_kernel(scenario())
    assert answer["status"] == 201
    assert [b["resource"]["cell_id"] for b in stored_cells(governance, "k-drop")] == ["c1", "c2"]


async def test_a_hung_service_times_out_and_the_record_is_not_delivered() -> None:
    """A service that accepts the connection but never answers: the exchange gives up after the
    timeout (the kernel's loop is held at most that long) and the cell would not run."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stream = audit_stream.AuditStream(f"http://127.0.0.1:{port}/api/", "token x", timeout=0.5)

    def accept_and_upgrade() -> None:
        peer, _ = listener.accept()
        request = peer.recv(65536)
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key"))  # fmt: skip
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        peer.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")  # fmt: skip
        peer.recv(65536)  # the record arrives; no answer ever comes
        time.sleep(1.0)
        peer.close()

    server = threading.Thread(target=accept_and_upgrade, daemon=True)
    server.start()
    started = time.monotonic()
    with pytest.raises(GovernanceUnavailable, match="did not acknowledge"):
        await as_a_kernel(stream.send([{"event_type": "cell.start"}]))
    assert time.monotonic() - started < 5
    server.join(timeout=5)
    listener.close()


async def test_server_pings_do_not_end_an_idle_kernel_stream(
    api_base: str, governance: Any, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel reads its stream only during an exchange, so it cannot answer pings: with
    ``websocket_ping_interval`` set for the server, the stream must not be pinged (and closed)."""
    monkeypatch.setitem(jp_serverapp.web_app.settings, "websocket_ping_interval", 0.05)
    monkeypatch.setitem(jp_serverapp.web_app.settings, "websocket_ping_timeout", 0.05)
    token = governance.service.credentials.mint("k-idle", "alice")
    client = GovernanceClient(ServiceConfig(url=api_base, token=token), stream=True)

    async def first() -> Any:
        await client.send_audit([{"event_type": "cell.start", "cell_id": "c1"}])
        assert client.stream is not None
        return client.stream._connection

    async def second() -> Any:
        try:
            await client.send_audit([{"event_type": "cell.start", "cell_id": "c2"}])
            assert client.stream is not None
            return client.stream._connection
        finally:
            await client.aclose()

    opened = await as_a_kernel(first())
    await asyncio.sleep(0.4)  # idle: several ping intervals and timeouts
    assert await as_a_kernel(second()) is opened, "the idle stream was closed and had to reconnect"
    assert [b["resource"]["cell_id"] for b in stored_cells(governance, "k-idle")] == ["c1", "c2"]
