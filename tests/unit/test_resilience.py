"""The arithmetic of breakers and rate limits, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backlane.resilience.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerSnapshot,
    admit,
    after_failure,
    after_neutral,
    after_success,
    effective_state,
)
from backlane.resilience.rate_limit import take_slot

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OPEN_S, TRIAL_S = 30.0, 60.0


def fail(s: BreakerSnapshot, now: datetime = T0) -> BreakerSnapshot:
    return after_failure(s, now, threshold=3, open_seconds=OPEN_S)


def allow(s: BreakerSnapshot, now: datetime = T0):  # type: ignore[no-untyped-def]
    return admit(s, now, open_seconds=OPEN_S, trial_seconds=TRIAL_S)


def test_a_healthy_breaker_lets_every_call_through_without_a_slot() -> None:
    admission = allow(BreakerSnapshot())
    assert admission.allowed and admission.after == BreakerSnapshot()


def test_three_failures_in_a_row_open_it_for_open_seconds() -> None:
    s = fail(fail(BreakerSnapshot()))
    assert s.state == CLOSED and s.consecutive_failures == 2
    s = fail(s)
    assert (s.state, s.open_until, s.times_opened) == (OPEN, T0 + timedelta(seconds=OPEN_S), 1)
    refused = allow(s, T0 + timedelta(seconds=10))
    assert not refused.allowed and refused.delay == 20.0


def test_a_success_resets_the_count() -> None:
    s = after_success(fail(fail(BreakerSnapshot())))
    assert s == BreakerSnapshot()
    assert fail(fail(s)).state == CLOSED


def test_after_a_failure_callers_go_one_at_a_time() -> None:
    s = fail(BreakerSnapshot())
    first = allow(s)
    assert first.allowed and first.after.trial_until == T0 + timedelta(seconds=TRIAL_S)
    second = allow(first.after, T0 + timedelta(seconds=1))
    assert not second.allowed and second.delay == OPEN_S  # capped by open_seconds
    assert allow(after_neutral(first.after)).allowed


def test_exactly_one_trial_when_the_open_period_ends() -> None:
    s = fail(fail(fail(BreakerSnapshot())))
    at = T0 + timedelta(seconds=OPEN_S)
    trial = allow(s, at)
    assert trial.allowed and trial.after.state == HALF_OPEN
    other = allow(trial.after, at)
    assert not other.allowed and other.delay == OPEN_S


def test_the_trial_decides() -> None:
    s = allow(fail(fail(fail(BreakerSnapshot()))), T0 + timedelta(seconds=OPEN_S)).after
    assert after_success(s).state == CLOSED
    reopened = fail(s, T0 + timedelta(seconds=OPEN_S))
    assert (reopened.state, reopened.times_opened) == (OPEN, 2)
    assert reopened.open_until == T0 + timedelta(seconds=2 * OPEN_S)


def test_a_crashed_trial_frees_the_breaker_after_the_trial_time() -> None:
    at = T0 + timedelta(seconds=OPEN_S)
    s = allow(fail(fail(fail(BreakerSnapshot()))), at).after
    assert not allow(s, at + timedelta(seconds=TRIAL_S - 1)).allowed
    assert allow(s, at + timedelta(seconds=TRIAL_S)).allowed


def test_a_late_failure_while_open_does_not_extend_the_open_period() -> None:
    s = fail(fail(fail(BreakerSnapshot())))
    later = fail(s, T0 + timedelta(seconds=5))
    assert later.open_until == s.open_until and later.times_opened == 1


def test_effective_state_shows_an_expired_open_breaker_as_half_open() -> None:
    s = fail(fail(fail(BreakerSnapshot())))
    assert effective_state(s, T0) == OPEN
    assert effective_state(s, T0 + timedelta(seconds=OPEN_S)) == HALF_OPEN


def test_take_slot_sliding_window() -> None:
    first = take_slot([], 0.0, 2, 3600)
    second = take_slot(first.calls, 10.0, 2, 3600)
    assert first.allowed and second.allowed and second.calls == [0.0, 10.0]
    third = take_slot(second.calls, 100.0, 2, 3600)
    assert not third.allowed and third.wait == 3500.0 and third.calls == [0.0, 10.0]
    assert take_slot(second.calls, 3600.0, 2, 3600).allowed  # the first call left the window
    assert take_slot(second.calls, 3600.0, 2, 3600).calls == [10.0, 3600.0]


def test_take_slot_forgets_calls_outside_the_window() -> None:
    slot = take_slot([1.0, 2.0, 3.0, 5000.0], 5001.0, 2, 3600)
    assert slot.allowed and slot.calls == [5000.0, 5001.0]
