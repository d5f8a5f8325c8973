"""Numbers from upstream are bounded: a server-named delay is clamped between the floor and
``retries.max_delay_seconds``, one we cannot read names none, and waits are capped in number."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import httpx
import pytest
from dramatiq.message import Message
from dramatiq.middleware import CurrentMessage

from backlane.core.processing import DELAYS_OPTION, FinalFailure, RetryPolicy, run_item
from backlane.errors import (
    DEFAULT_DELAY_CEILING_SECONDS,
    SERVER_DELAY_FLOOR_SECONDS,
    CircuitOpen,
    NotReady,
    RateLimited,
    classify_response,
    delay_ms,
    parse_delay_seconds,
)
from backlane.resilience.breaker import OPEN, BreakerSnapshot, admit

CEILING = DEFAULT_DELAY_CEILING_SECONDS


def response(status: int, headers: dict[str, str] | None = None, text: str = "") -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, text=text, request=httpx.Request("GET", "http://api/x"))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("30000000000", CEILING),  # 950 years: cut to the ceiling
        ("99999999999999999999999", 60.0),  # past 15 digits: not a number we read, default wait
        ("inf", 60.0),
        ("nan", 60.0),
        ("-5", 60.0),
        ("1e9", 60.0),
        ("soon", 60.0),
        ("0", SERVER_DELAY_FLOOR_SECONDS),
        ("17", 17.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", SERVER_DELAY_FLOOR_SECONDS),  # a date past: the floor
        ("Wed, 21 Oct 2099 07:28:00 GMT", CEILING),
    ],
)
def test_retry_after_is_clamped_or_refused(header: str, expected: float) -> None:
    error = classify_response(response(429, {"Retry-After": header}))
    assert isinstance(error, RateLimited)
    assert error.delay_seconds == expected
    assert delay_ms(error) == int(expected * 1000)


def test_http_date_counts_from_now() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_delay_seconds("Thu, 01 Jan 2026 12:02:00 GMT", now) == 120.0
    assert parse_delay_seconds("Thu, 01 Jan 2026 12:02:00", now) is None  # no zone: not an HTTP-date


def test_wait_for_body_is_clamped() -> None:
    error = classify_response(response(429, text='{"message": "wait for 30000000000 seconds"}'))
    assert isinstance(error, RateLimited) and error.delay_seconds == CEILING


def test_delay_ms_is_total_for_any_float() -> None:
    for value in (float("inf"), float("-inf"), float("nan"), -1.0, 1e300):
        error = RateLimited("x", value)
        assert 0 <= delay_ms(error) <= CEILING * 1000
        error.delay_seconds = value  # set after construction too
        assert 0 <= delay_ms(error) <= CEILING * 1000


def test_every_named_delay_is_bounded() -> None:
    assert NotReady("x", 10**12).delay_seconds == CEILING
    assert CircuitOpen("x", float("inf")).delay_seconds == CEILING


def test_breaker_open_time_stored_too_long_is_cut_back() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    stored = BreakerSnapshot(OPEN, 3, now + timedelta(days=365 * 900), None, 1)
    admission = admit(stored, now, open_seconds=30, trial_seconds=60)
    assert not admission.allowed and admission.delay == 30


@pytest.fixture
def current_message() -> Iterator[Message[Any]]:
    message: Message[Any] = Message(queue_name="q", actor_name="a", args=(), kwargs={}, options={})
    token = CurrentMessage._MESSAGE.set(message)
    yield message
    CurrentMessage._MESSAGE.reset(token)


def test_waits_never_count_as_tries_but_are_capped(current_message: Message[Any]) -> None:
    policy = RetryPolicy(max_retries=0, min_backoff_ms=100, max_backoff_ms=1000, max_waits=3)
    failures: list[str] = []

    def wait() -> None:
        raise RateLimited("slow down", 5)

    for n in range(3):  # max_retries=0, yet three waits go through: a wait is not a try
        with pytest.raises(dramatiq.Retry) as raised:
            run_item("p", 1, wait, policy, failures.append)
        assert raised.value.delay == 5000
        assert current_message.options[DELAYS_OPTION] == n + 1
    with pytest.raises(FinalFailure) as final:
        run_item("p", 1, wait, policy, failures.append)
    assert failures == ["gave up after 3 waits in a row (retries.max_waits): slow down"]
    assert final.value.kind == "rate_limited"


def test_a_failure_resets_the_wait_count(current_message: Message[Any]) -> None:
    policy = RetryPolicy(max_retries=5, min_backoff_ms=100, max_backoff_ms=1000, max_waits=2)
    current_message.options[DELAYS_OPTION] = 2

    def fail() -> None:
        raise RuntimeError("boom")

    with pytest.raises(dramatiq.Retry):
        run_item("p", 1, fail, policy)
    assert DELAYS_OPTION not in current_message.options


def test_a_forged_counter_is_read_as_zero(current_message: Message[Any]) -> None:
    policy = RetryPolicy(max_retries=0, min_backoff_ms=100, max_backoff_ms=1000, max_waits=2)
    current_message.options[DELAYS_OPTION] = "lots"
    with pytest.raises(dramatiq.Retry):
        run_item("p", 1, lambda: (_ for _ in ()).throw(RateLimited("w", 1)), policy)
    assert current_message.options[DELAYS_OPTION] == 1


def test_the_ceiling_is_the_installed_setting() -> None:
    from backlane.errors import set_delay_ceiling

    set_delay_ceiling(120)
    try:
        assert classify_response(response(429, {"Retry-After": "30000000000"})).delay_seconds == 120  # type: ignore[union-attr]
    finally:
        set_delay_ceiling(CEILING)
