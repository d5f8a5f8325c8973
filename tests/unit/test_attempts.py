"""Each item's tries and last outcome (backlane.core.attempts): written only when a try is not
a first-try success, never in a way that changes the item's outcome."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dramatiq
import pytest
import sqlalchemy.exc
from dramatiq.message import Message
from dramatiq.middleware import CurrentMessage
from sqlalchemy import select

from backlane.core import runtime as runtime_module
from backlane.core.clock import FrozenClock
from backlane.core.processing import FAILURES_OPTION, FinalFailure, RetryPolicy, run_item
from backlane.db.engine import Database
from backlane.db.models import ItemAttempts
from backlane.errors import PermanentError, RateLimited, TransientError, Unavailable

POLICY = RetryPolicy(max_retries=3, min_backoff_ms=100, max_backoff_ms=1000)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'attempts.db'}")
    ItemAttempts.__table__.create(database.engine)  # type: ignore[attr-defined]
    monkeypatch.setattr(runtime_module, "_runtime", SimpleNamespace(open_database=database, clock=FrozenClock()))
    yield database
    database.dispose()


@pytest.fixture
def message() -> Iterator[Message[Any]]:
    current: Message[Any] = Message(queue_name="orders", actor_name="process_orders", args=(7,), kwargs={}, options={})
    token = CurrentMessage._MESSAGE.set(current)
    yield current
    CurrentMessage._MESSAGE.reset(token)


def records(db: Database) -> list[tuple[str, str, int, str, str | None]]:
    columns = ItemAttempts.pipeline, ItemAttempts.item_id, ItemAttempts.attempts, ItemAttempts.last_outcome
    with db.connection() as connection:
        return [tuple(r) for r in connection.execute(select(*columns, ItemAttempts.last_reason))]  # type: ignore[misc]


def fail_with(error: Exception):  # type: ignore[no-untyped-def]
    def work() -> None:
        raise error

    return work


def deliver(message: Message[Any], work: Any, failures: list[str] | None = None) -> str:
    """One delivery of the message (its options carried over as Dramatiq would): how it ended."""
    try:
        run_item("orders", 7, work, POLICY, failures.append if failures is not None else None)
    except dramatiq.Retry:
        return "retry"
    except FinalFailure:
        return "failed"
    return "succeeded"


def test_a_first_try_success_writes_nothing(db: Database, message: Message[Any]) -> None:
    assert deliver(message, lambda: None) == "succeeded"
    assert records(db) == []


def test_a_retry_then_a_success_shows_two_attempts_succeeded(db: Database, message: Message[Any]) -> None:
    assert deliver(message, fail_with(TransientError("503 from the order API"))) == "retry"
    assert records(db) == [("orders", "7", 1, "retrying", "503 from the order API")]
    assert deliver(message, lambda: None) == "succeeded"
    # The last failure's reason stays beside the success.
    assert records(db) == [("orders", "7", 2, "succeeded", "503 from the order API")]


def test_a_final_failure_after_n_retries_shows_n_plus_one_attempts(db: Database, message: Message[Any]) -> None:
    failures: list[str] = []
    outcomes = [deliver(message, fail_with(TransientError("503")), failures) for _ in range(POLICY.max_retries + 1)]
    assert outcomes == ["retry"] * POLICY.max_retries + ["failed"]
    assert records(db) == [("orders", "7", POLICY.max_retries + 1, "failed", failures[0])]
    assert failures[0] == f"gave up after {POLICY.max_retries + 1} attempts: 503"


def test_a_permanent_error_on_the_first_try_is_recorded(db: Database, message: Message[Any]) -> None:
    assert deliver(message, fail_with(PermanentError("422: no items"))) == "failed"
    assert records(db) == [("orders", "7", 1, "failed", "422: no items")]


def test_waits_are_not_tries_and_write_nothing(db: Database, message: Message[Any]) -> None:
    assert deliver(message, fail_with(Unavailable("connection refused"))) == "retry"
    assert deliver(message, fail_with(RateLimited("slow down", 2.0))) == "retry"
    assert records(db) == []
    assert message.options.get(FAILURES_OPTION, 0) == 0
    # A success after waits only is still a first-try success.
    assert deliver(message, lambda: None) == "succeeded"
    assert records(db) == []


def test_a_long_reason_is_cut(db: Database, message: Message[Any]) -> None:
    deliver(message, fail_with(TransientError("x" * 5000)))
    [(_, _, _, _, reason)] = records(db)
    assert reason is not None and len(reason) < 400 and "5,000 chars" in reason


def test_items_that_are_not_row_ids_are_not_recorded(db: Database) -> None:
    with pytest.raises(dramatiq.Retry):
        run_item("orders_inbox", {"order": "A-1"}, fail_with(TransientError("503")), POLICY)
    assert records(db) == []


def test_a_failed_write_changes_neither_the_retry_accounting_nor_the_outcome(
    db: Database, message: Message[Any], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_write(*args: Any, **kwargs: Any) -> None:
        raise sqlalchemy.exc.OperationalError("INSERT", {}, ConnectionRefusedError("Connection refused"))

    monkeypatch.setattr("backlane.core.attempts.write", broken_write)
    failures: list[str] = []
    with caplog.at_level(logging.WARNING, logger="backlane.attempts"):
        outcomes = [deliver(message, fail_with(TransientError("503")), failures) for _ in range(POLICY.max_retries + 1)]
    assert outcomes == ["retry"] * POLICY.max_retries + ["failed"]
    assert failures == [f"gave up after {POLICY.max_retries + 1} attempts: 503"]
    warnings = [r for r in caplog.records if r.name == "backlane.attempts"]
    assert len(warnings) == POLICY.max_retries + 1
    assert all("could not record attempt" in r.getMessage() and len(r.getMessage()) < 400 for r in warnings)

    monkeypatch.undo()
    assert records(db) == []


def test_without_an_open_database_nothing_is_written(monkeypatch: pytest.MonkeyPatch, message: Message[Any]) -> None:
    monkeypatch.setattr(runtime_module, "_runtime", SimpleNamespace(open_database=None, clock=FrozenClock()))
    with pytest.raises(dramatiq.Retry):
        run_item("orders", 7, fail_with(TransientError("503")), POLICY)


# -- what the dashboard shows from a record --------------------------------------------


def a_record(attempts: int, outcome: str, reason: str | None) -> SimpleNamespace:
    return SimpleNamespace(attempts=attempts, last_outcome=outcome, last_reason=reason)


def test_a_done_row_without_a_record_or_with_one_of_an_earlier_run_took_one_try() -> None:
    from backlane.operations.dashboard.items import attempt_cells

    expected = {"attempts": 1, "last outcome": "succeeded"}
    assert attempt_cells(None, done=True, failed=False, failure_reason=None) == expected
    # Requeued after a final failure, then done at the new run's first try (which writes nothing).
    stale = a_record(4, "failed", "gave up after 4 attempts: 503")
    assert attempt_cells(stale, done=True, failed=False, failure_reason=None) == expected


def test_rows_without_a_record_that_are_not_done_have_no_known_attempts() -> None:
    from backlane.operations.dashboard.items import attempt_cells

    assert attempt_cells(None, done=False, failed=False, failure_reason=None) == {
        "attempts": "—",
        "last outcome": "—",
    }
    assert attempt_cells(None, done=False, failed=True, failure_reason="x") == {
        "attempts": "—",
        "last outcome": "failed",
    }


def test_the_reason_is_shown_once() -> None:
    from backlane.operations.dashboard.items import attempt_cells

    failed = a_record(4, "failed", "gave up after 4 attempts: 503")
    assert attempt_cells(failed, done=False, failed=True, failure_reason="gave up after 4 attempts: 503") == {
        "attempts": 4,
        "last outcome": "failed",
    }
    retrying = a_record(2, "retrying", "503")
    assert attempt_cells(retrying, done=False, failed=False, failure_reason=None)["last outcome"] == "retrying: 503"
    succeeded = a_record(3, "succeeded", "503")
    assert attempt_cells(succeeded, done=True, failed=False, failure_reason=None) == {
        "attempts": 3,
        "last outcome": "succeeded (last failure: 503)",
    }
