from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import sqlalchemy.exc
from dramatiq.message import Message
from dramatiq.middleware import CurrentMessage

from backlane.core import log_limits
from backlane.core.log_limits import cut_value
from backlane.core.processing import FAILURES_OPTION, PENDING_FAILURE_OPTION, FinalFailure, RetryPolicy, run_item
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


# -- one retry count per item (issue 10, defect 1) ---------------------------------------


@pytest.fixture
def current_message() -> Iterator[Message[Any]]:
    """A Dramatiq message as the CurrentMessage middleware exposes it to a running actor."""
    message: Message[Any] = Message(queue_name="orders", actor_name="process_orders", args=(7,), kwargs={}, options={})
    token = CurrentMessage._MESSAGE.set(message)
    yield message
    CurrentMessage._MESSAGE.reset(token)


def database_down() -> Exception:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("Connection refused"))


def test_an_outage_of_our_database_never_spends_the_item_budget(current_message: Message[Any]) -> None:
    for _ in range(POLICY.max_retries * 3):
        with pytest.raises(dramatiq.Retry) as raised:
            run_item("p", 7, fail_with(database_down()), POLICY, lambda reason: pytest.fail("must not fail"))
        assert 100 <= (raised.value.delay or 0) <= 1000
    assert current_message.options.get(FAILURES_OPTION, 0) == 0


def test_a_failure_that_cannot_be_written_is_retried_then_written(current_message: Message[Any]) -> None:
    """Budget spent while the database is down: the verdict waits on the message, never the XQ."""
    current_message.options[FAILURES_OPTION] = POLICY.max_retries
    attempts: list[str] = []

    def on_failure_database_down(reason: str) -> None:
        attempts.append(reason)
        raise database_down()

    with pytest.raises(dramatiq.Retry):
        run_item("p", 7, fail_with(TransientError("503")), POLICY, on_failure_database_down)
    assert current_message.options[PENDING_FAILURE_OPTION]["reason"].startswith("gave up after 4 attempts")

    written: list[str] = []
    with pytest.raises(FinalFailure) as raised:
        run_item("p", 7, lambda: pytest.fail("the work is not run again"), POLICY, written.append)
    assert written == [attempts[0]]
    assert raised.value.kind == "transient"
    assert PENDING_FAILURE_OPTION not in current_message.options


def test_an_expired_message_is_let_go_unworked_not_dead_lettered(current_message: Message[Any]) -> None:
    policy = RetryPolicy(max_retries=3, min_backoff_ms=100, max_backoff_ms=1000, max_age_ms=1000)
    old = current_message.copy(message_timestamp=int(time.time() * 1000) - 5000)
    CurrentMessage._MESSAGE.set(old)
    run_item("p", 7, lambda: pytest.fail("an expired message is not worked"), policy, lambda r: pytest.fail(r))


def test_log_limits_cut_long_values_and_records() -> None:
    assert cut_value(42) == 42
    assert cut_value({"order_id": 1}) == {"order_id": 1}
    huge = "x" * 5_000_000
    assert len(cut_value(huge)) < 400
    log_limits.install()
    record = logging.getLogRecordFactory()("n", logging.INFO, __file__, 1, "%s", (huge,), None)
    assert len(record.getMessage()) < log_limits.MAX_LOG_CHARS + 50


def test_a_pipeline_unregistered_leaves_no_actor_behind() -> None:
    """Tests register pipelines of their own: unregistering takes them and their actors away."""
    from dramatiq.brokers.stub import StubBroker

    from backlane.core.pipeline import Pipeline, Purpose
    from backlane.core.registry import Registry

    broker, registry = StubBroker(), Registry()
    pipeline = Pipeline(
        name="passing", purpose=Purpose.INTERNAL, fetch=lambda ctx, limit: [], process=lambda ctx, i: None
    )
    registry.register(pipeline, broker)
    assert "process_passing" in broker.actors and [r.name for r in registry] == ["passing"]
    registry.unregister("passing")
    assert "process_passing" not in broker.actors and list(registry) == []
    registry.register(pipeline, broker)  # the name is free again
    assert [r.name for r in registry] == ["passing"]
