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
    witnesses.witnessed("k", "m1", "alice")
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
    witnesses, clock = book()
    witnesses.witnessed("batch-kernel", "m9", "ci")  # nobody guards it: no opinion
    witnesses.guards("k")
    witnesses.witnessed("k", "m9", "alice")
    witnesses.witnessed("k", "", "alice")  # the kernel's own start-up records
    clock.now = 9
    assert witnesses.due() == []  # the server's report of the forward may still be on its way
    clock.now = 11
    [found] = witnesses.due()
    assert (found.kind, found.alert, found.kernel_id, found.msg_id, found.user) == (
        "integrity.unguarded_request",
        True,
        "k",
        "m9",
        "alice",
    )
    assert witnesses.due() == []  # reported once


def test_the_two_witnesses_may_arrive_in_either_order() -> None:
    """Client mode: the kernel's start record reaches the service before the single-user server's
    report that it forwarded the request (a second later); that is no alert."""
    witnesses, clock = book()
    witnesses.guards("k")
    witnesses.witnessed("k", "m1", "alice")
    clock.now = 1
    witnesses.forwarded("k", "m1", "alice")
    witnesses.replied("k", "m1", "ok")
    clock.now = 100
    assert witnesses.due() == []
    assert not witnesses.outstanding and not witnesses.unforwarded


def test_a_request_never_answered_is_eventually_forgotten() -> None:
    witnesses, clock = book()
    witnesses.forwarded("k", "m1", "alice")
    clock.now = 7 * 3600
    [found] = witnesses.due()
    assert found.kind == "request.unanswered" and not found.alert


def test_a_msg_id_the_kernel_masked_still_matches_the_forward() -> None:
    """A msg_id holding a card-number-like run of digits is masked in the kernel's record, while the
    server reports it as it was sent: the book matches the two in their masked form."""
    witnesses = WitnessBook(grace_s=10.0, masked=lambda msg_id: msg_id.replace("4111111111111111", "*" * 16))
    witnesses.forwarded("k", "x-4111111111111111", "alice")
    witnesses.replied("k", "x-4111111111111111", "ok")
    witnesses.witnessed("k", "x-" + "*" * 16, "alice")
    assert not witnesses.outstanding and not witnesses.unforwarded
