"""The masking Session and the output ledger without a kernel: message shapes, fail closed, ledger."""

from __future__ import annotations

import hashlib
import threading
from typing import Any, cast

import pytest
from kernel_helpers import AMEX, DISCOVER, MASTERCARD, VISA, assert_masked  # type: ignore[import-not-found]

from governed_kernel.masking import MaskReport
from governed_kernel.masking_ledger import OutputLedger
from governed_kernel.session import MaskingSession, checked_masker

V, M, A, D = VISA, MASTERCARD, AMEX, DISCOVER


class Recorder:
    """Stands in for a socket: keeps the multipart frames the Session would send."""

    def __init__(self) -> None:
        self.frames: list[list[bytes]] = []

    def send_multipart(self, frames: list[Any], copy: bool = True) -> None:
        self.frames.append([bytes(f) for f in frames])


@pytest.fixture
def session() -> MaskingSession:
    return MaskingSession(key=b"k")


def sent(session: MaskingSession, msg_type: str, content: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    socket = Recorder()
    session.send(socket, msg_type, content, parent={"msg_id": "p1"}, **kwargs)
    _, frames = session.feed_identities(socket.frames[0])
    out: dict[str, Any] = session.deserialize(frames)
    out["wire"] = b"".join(socket.frames[0]).decode("latin-1")
    return out


@pytest.mark.parametrize(
    ("msg_type", "content", "pan"),
    [
        ("complete_reply", {"matches": [f"'{V}'"], "metadata": {"_jupyter_types_experimental": [{"text": V}]},
                            "cursor_start": 0, "cursor_end": 1, "status": "ok"}, V),
        ("history_reply", {"history": [(1, 2, (f"x = {M}", f"'{M}'"))], "status": "ok"}, M),
        ("inspect_reply", {"data": {"text/plain": f"String form: {A}", "text/html": f"<b>{A}</b>"},
                           "metadata": {}, "found": True, "status": "ok"}, A),
        ("execute_reply", {"status": "ok", "execution_count": 1, "user_expressions": {
            "e": {"status": "ok", "data": {"text/plain": f"'{D}'"}, "metadata": {}}},
            "payload": [{"source": "page", "data": {"text/plain": D}, "start": 0},
                        {"source": "set_next_input", "text": D, "replace": False}]}, D),
        ("kernel_info_reply", {"banner": f"card {V}", "supported_features": ["debugger"], "status": "ok"}, V),
        ("input_request", {"prompt": f"card {M}: ", "password": False}, M),
        ("error", {"ename": "ValueError", "evalue": A, "traceback": [f"\x1b[0;31m{A}\x1b[0m"]}, A),
        ("execute_input", {"code": f"x = {D}", "execution_count": 1}, D),
        ("comm_open", {"comm_id": "c", "target_name": "t", "data": {"n": int(V), int(M): (V,), "card_number": "1234-5678-9012-3456"}}, V),  # noqa: E501
        ("display_data", {"data": {"application/json": {"k": [int(A)]}, "image/png": "iVBOR"},
                          "metadata": {"note": A}, "transient": {"display_id": "d"}}, A),
    ],
)  # fmt: skip
def test_every_message_shape_is_masked(
    session: MaskingSession, msg_type: str, content: dict[str, Any], pan: str
) -> None:
    msg = sent(session, msg_type, content)
    assert_masked([msg["content"], msg["metadata"], msg["wire"]], pan, where=msg_type)
    if msg_type == "kernel_info_reply":
        assert msg["content"]["supported_features"] == [] and msg["content"]["debugger"] is False
    if msg_type == "comm_open":
        assert msg["content"]["data"]["card_number"] == "****-****-****-3456"  # the policy's key rule applies


def test_buffers_and_metadata_are_masked(session: MaskingSession) -> None:
    socket = Recorder()
    session.send(socket, "comm_msg", {"comm_id": "c", "data": {}}, metadata={"m": V},
                 buffers=[f"raw {V}".encode(), memoryview(b"\x00\x01binary")])  # fmt: skip
    wire = b"".join(socket.frames[0]).decode("latin-1")
    assert_masked(wire, V, where="buffers")
    assert socket.frames[0][-1] == b"\x00\x01binary"


def test_a_message_that_cannot_be_masked_is_withheld_with_a_notice(session: MaskingSession) -> None:
    session.ledger.begin("p1")
    deep: Any = V
    for _ in range(300):
        deep = [deep]
    for msg_type, expect in (("display_data", "stream"), ("execute_reply", "execute_reply"),
                             ("input_request", "input_request")):  # fmt: skip
        msg = sent(session, msg_type, {"data": {"application/json": deep}, "prompt": deep, "status": "ok"})
        assert msg["header"]["msg_type"] == expect
        assert V not in msg["wire"] and V[-4:] not in msg["wire"]
        assert "withheld because masking failed" in str(msg["content"])
    assert session.ledger.finish("p1").dropped == 3


def test_headers_are_left_alone(session: MaskingSession) -> None:
    msg = sent(session, "stream", {"name": "stdout", "text": "hi"})
    assert msg["parent_header"] == {"msg_id": "p1"}
    assert msg["content"] == {"name": "stdout", "text": "hi"}


def test_ledger_records_masked_text_hash_and_counts(session: MaskingSession) -> None:
    ledger = session.ledger
    ledger.begin("p1")
    sent(session, "stream", {"name": "stdout", "text": f"card {V}\n"})
    sent(session, "execute_result", {"data": {"text/plain": M, "text/html": f"<b>{M}</b>"}, "metadata": {},
                                     "execution_count": 1})  # fmt: skip
    sent(session, "error", {"ename": "E", "evalue": "x", "traceback": ["\x1b[31mTraceback\x1b[0m"]})
    sent(session, "status", {"execution_state": "idle"})
    outputs = ledger.finish("p1")
    expected = f"card ************{V[-4:]}\n************{M[-4:]}\nTraceback\n"
    assert outputs.text == expected
    assert outputs.size == len(expected.encode())
    assert outputs.sha256 == hashlib.sha256(expected.encode()).hexdigest()
    assert outputs.counts == {"pan": 3}  # stream 1, result text/plain + text/html 2
    assert outputs.dropped == 0
    assert ledger.finish("p1").size == 0  # finished: nothing more is recorded


def test_ledger_caps_text_but_hashes_everything() -> None:
    ledger = OutputLedger(text_cap=10)
    ledger.begin("a")
    ledger.add_text("a", "é" * 8)
    ledger.add_text("a", "more")
    ledger.add_text("other", "ignored")
    out = ledger.finish("a")
    assert out.text == "é" * 5 and out.size == 20
    assert out.sha256 == hashlib.sha256(("é" * 8 + "more").encode()).hexdigest()


def test_ledger_is_thread_safe_and_runs_finishers() -> None:
    ledger = OutputLedger()
    calls: list[int] = []
    ledger.add_finisher(lambda: calls.append(1))
    ledger.begin("a")

    def add() -> None:
        for _ in range(500):
            ledger.add_text("a", "x")
            report = MaskReport()
            report.add("pan", "visa")
            ledger.add_report(report)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out = ledger.finish("a")
    assert (out.size, out.counts, out.brands, calls) == (2000, {"pan": 2000}, {"visa": 2000}, [1])


def test_policy_column_patterns_with_global_flags_work() -> None:
    masker = checked_masker({"full_mask_columns": ["(?i)^cvv2?$"], "pan_columns": ["(?i)card_?(number|no)$"]})
    assert masker.config.column_rule("CVV") == "full"
    assert masker.config.column_rule("Card_Number") == "pan"
    assert masker.config.column_rule("amount") is None


def test_session_masker_masks_text_for_audit_and_errors(session: MaskingSession) -> None:
    assert session.mask_text(f"failed for {V}") == f"failed for ************{V[-4:]}"
    assert session.masking_problem is None


def bench_overhead(content: dict[str, Any], msg_type: str, repeat: int = 1000) -> tuple[float, float]:
    """Microseconds per send (best of 5) for a plain Session and the MaskingSession."""
    import time

    from jupyter_client.session import Session

    class Null:
        def send_multipart(self, frames: list[Any], copy: bool = True) -> None:
            pass

    def per_send(session: Session) -> float:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeat):
                session.send(cast(Any, Null()), msg_type, content, parent={"msg_id": "p"})
            best = min(best, (time.perf_counter() - start) / repeat * 1e6)
        return best

    masking = MaskingSession(key=b"k")
    masking.mask_text("warm up")
    return per_send(Session(key=b"k")), per_send(masking)


def test_overhead_per_message_is_small() -> None:
    line = "2026-05-09 07:35:25,123 INFO order 123456 amount 12.50 status ok id 98765\n"
    cases: dict[str, tuple[str, dict[str, Any]]] = {
        "execute_result '42'": ("execute_result", {"data": {"text/plain": "42"}, "metadata": {},
                                                   "execution_count": 1}),
        "stream 1 KB of numbers": ("stream", {"name": "stdout", "text": (line * 20)[:1024]}),
    }  # fmt: skip
    for name, (msg_type, content) in cases.items():
        plain, masked = bench_overhead(content, msg_type)
        print(f"{name}: plain {plain:.1f} us, masking {masked:.1f} us, overhead {masked - plain:.1f} us")
        assert masked - plain < 2000, name


def test_unmasked_comm_ids_skip_ids_that_look_like_a_card(monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    from governed_kernel import comm_ids
    from governed_kernel.masking import Masker

    looks_like_a_card = uuid.UUID(hex="4111111111111111" + "ab" * 8)
    plain = uuid.UUID(hex="abcdef" * 5 + "12")
    drawn = iter([looks_like_a_card, looks_like_a_card, plain])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(drawn))
    assert comm_ids.unmasked_id(Masker()) == plain.hex
