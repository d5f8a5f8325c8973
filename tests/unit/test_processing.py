from __future__ import annotations

import dramatiq
import pytest

from backlane.core.processing import FinalFailure, RetryPolicy, run_item
from backlane.errors import PermanentError, RateLimited, TransientError

POLICY = RetryPolicy(max_retries=3, min_backoff_ms=100, max_backoff_ms=1000)


def fail_with(error: Exception):  # type: ignore[no-untyped-def]
    def work() -> None:
        raise error

    return work


def test_backoff_grows_and_is_capped() -> None:
    delays = [POLICY.backoff_ms(n) for n in range(8)]
    assert all(100 <= d <= 1000 for d in delays)
    assert delays[-1] > delays[0]


def test_success_calls_no_failure_hook() -> None:
    failures: list[str] = []
    run_item("p", 1, lambda: None, POLICY, failures.append)
    assert failures == []


def test_transient_error_retries_with_backoff() -> None:
    with pytest.raises(dramatiq.Retry) as raised:
        run_item("p", 1, fail_with(TransientError("503")), POLICY)
    assert 100 <= (raised.value.delay or 0) <= 1000


def test_rate_limit_retries_after_exactly_the_named_delay() -> None:
    with pytest.raises(dramatiq.Retry) as raised:
        run_item("p", 1, fail_with(RateLimited("wait", 12.5)), POLICY)
    assert raised.value.delay == 12_500


def test_permanent_error_fails_the_item_at_once_with_its_reason() -> None:
    failures: list[str] = []
    with pytest.raises(FinalFailure) as raised:
        run_item("p", 1, fail_with(PermanentError("422: no items")), POLICY, failures.append)
    assert failures == ["422: no items"]
    assert raised.value.kind == "permanent"


def test_unexpected_exceptions_are_classified_not_lost() -> None:
    with pytest.raises(dramatiq.Retry):
        run_item("p", 1, fail_with(KeyError("surprise")), POLICY)
