"""The witness book alone: which forwarded requests settle as what (see governed_server.service.witness)."""

from __future__ import annotations

from governed_server.service.witness import WitnessBook


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def book() -> tuple[WitnessBook, Clock]:
    clock = Clock()
    return WitnessBook(grace_s=10.0, clock=clock), clock


def test_a_witnessed_request_settles_as_nothing() -> None:
    witnesses, clock = book()
    witnesses.forwarded("k", "m1", "alice")
    witnesses.replied("k", "m1", "ok")
    assert witnesses.witnessed("k", "m1", "alice") is None
    clock.now = 100
    assert witnesses.due() == []


def test_a_reply_without_a_kernel_record_is_an_alert_after_the_grace_period_only() -> None:
    witnesses, clock = book()
    witnesses.forwarded("k", "m1", "alice")
    witnesses.replied("k", "m1", "ok")
    clock.now = 9
    assert witnesses.due() == []
    clock.now = 11
    [found] = witnesses.due()
    assert (found.kind, found.alert, found.user) == ("integrity.witness_missing", True, "alice")
    assert witnesses.due() == []  # reported once


def test_aborted_and_lost_requests_are_not_alerts() -> None:
    witnesses, _ = book()
    witnesses.forwarded("k", "aborted", "alice")
    witnesses.replied("k", "aborted", "aborted")
    witnesses.forwarded("k", "lost", "alice")
    witnesses.kernel_gone("k")
    kinds = sorted((f.kind, f.alert) for f in witnesses.due())
    assert kinds == [("request.aborted", False), ("request.lost", False)]


def test_a_kernel_record_of_a_request_never_forwarded_is_an_alert_for_guarded_kernels_only() -> None:
    witnesses, _ = book()
    assert witnesses.witnessed("batch-kernel", "m9", "ci") is None  # nobody guards it: no opinion
    witnesses.guards("k")
    found = witnesses.witnessed("k", "m9", "alice")
    assert found is not None and found.kind == "integrity.unguarded_request" and found.alert
    assert witnesses.witnessed("k", "", "alice") is None  # the kernel's own start-up records


def test_a_request_never_answered_is_eventually_forgotten() -> None:
    witnesses, clock = book()
    witnesses.forwarded("k", "m1", "alice")
    clock.now = 7 * 3600
    [found] = witnesses.due()
    assert found.kind == "request.unanswered" and not found.alert
