"""The per-message path's shortcuts keep their behaviour: batched outcome lines reach the log
whole and in order, and the broker still calls every middleware hook that exists."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from dramatiq.middleware import Middleware, MiddlewareError

from backlane.core import outcomes
from backlane.messaging.broker import BacklaneBroker


@pytest.fixture
def batched() -> Any:
    stream = io.StringIO()
    target = logging.StreamHandler(stream)
    target.setFormatter(logging.Formatter("[%(name)s] [%(levelname)s] %(message)s"))
    handler = outcomes.BatchingHandler(target, interval=60)  # flushed by hand below
    outcomes.logger.addHandler(handler)
    propagate, level = outcomes.logger.propagate, outcomes.logger.level
    outcomes.logger.propagate = False
    outcomes.logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        outcomes.logger.removeHandler(handler)
        handler.close()
        outcomes.logger.propagate, outcomes.logger.level = propagate, level


def test_batched_outcome_lines_are_written_whole_and_in_order_when_flushed(batched: io.StringIO) -> None:
    outcomes.record("orders", 1, "retry", attempt=1, duration_s=0.01, kind="transient", reason="503", delay_s=15)
    outcomes.record("orders", 1, "succeeded", attempt=2, duration_s=0.02)
    outcomes.record("orders", 2, "failed", attempt=1, duration_s=0.0, kind="permanent", reason="404")
    assert batched.getvalue() == "", "held for the batch"
    outcomes.flush_lines()
    lines = batched.getvalue().splitlines()
    assert lines == [
        '[backlane.outcome] [INFO] {"pipeline":"orders","item":1,"outcome":"retry","attempt":1,'
        '"duration_ms":10.0,"error_class":"transient","reason":"503","retry_in_s":15}',
        '[backlane.outcome] [INFO] {"pipeline":"orders","item":1,"outcome":"succeeded","attempt":2,"duration_ms":20.0}',
        '[backlane.outcome] [WARNING] {"pipeline":"orders","item":2,"outcome":"failed","attempt":1,'
        '"duration_ms":0.0,"error_class":"permanent","reason":"404"}',
    ]


def test_a_full_batch_is_written_without_waiting(batched: io.StringIO) -> None:
    for item in range(outcomes.OUTCOME_BATCH_LINES):
        outcomes.record("orders", item, "succeeded", attempt=1, duration_s=0.0)
    assert len(batched.getvalue().splitlines()) == outcomes.OUTCOME_BATCH_LINES


def test_outcome_records_keep_their_fields_for_other_handlers(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="backlane.outcome"):
        outcomes.record("orders", 7, "succeeded", attempt=1, duration_s=0.0)
    (record,) = [r for r in caplog.records if r.name == "backlane.outcome"]
    fields = record.backlane  # type: ignore[attr-defined]
    assert fields == {"pipeline": "orders", "item": 7, "outcome": "succeeded", "attempt": 1, "duration_ms": 0.0}


def test_a_batched_outcome_record_is_the_record_logging_would_have_made() -> None:
    """The batching handler's shortcut (a record copied from a template, the date formatted once
    a second) gives the very record and line Logger.makeRecord and the target's formatter give."""
    stream = io.StringIO()
    target = logging.StreamHandler(stream)
    fmt = "[%(asctime)s] [PID %(process)d] [%(processName)s] [%(threadName)s] [%(name)s] [%(levelname)s] %(message)s"
    target.setFormatter(logging.Formatter(fmt))
    handler = outcomes.BatchingHandler(target, interval=60)
    made: list[logging.LogRecord] = []
    handler.handle = made.append  # type: ignore[assignment,method-assign]
    try:
        fields = {"pipeline": "orders", "item": 3}
        handler.add(logging.WARNING, '{"x":1}', fields)
    finally:
        handler.close()
    (shortcut,) = made
    logger = outcomes.logger
    expected = logger.makeRecord(logger.name, logging.WARNING, outcomes.__file__, 0, "%s", ('{"x":1}',), None, "record")
    assert type(shortcut) is type(expected)
    expected.__dict__.update(backlane=fields, created=shortcut.created, msecs=shortcut.msecs)
    expected.relativeCreated = shortcut.relativeCreated
    assert shortcut.__dict__ == expected.__dict__
    assert handler.format(shortcut) == target.format(expected)
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.5):  # the cached second moves on
        shortcut.created, shortcut.msecs = created, int((created - int(created)) * 1000) + 0.0
        assert handler.format(shortcut) == target.format(shortcut)


class _Seen(Middleware):
    def __init__(self, seen: list[str], name: str) -> None:
        self.seen, self.name = seen, name

    def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        self.seen.append(f"{self.name}.before")

    def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        self.seen.append(f"{self.name}.after")


class _Refuses(Middleware):
    def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        raise MiddlewareError("no")


def test_the_broker_calls_the_overridden_hooks_in_dramatiqs_order_and_sees_list_edits() -> None:
    seen: list[str] = []
    broker = BacklaneBroker(url="amqp://guest:guest@127.0.0.1:1/%2F", middleware=[_Seen(seen, "a")])
    broker.add_middleware(_Seen(seen, "b"))
    broker.emit_before("enqueue", None, None)
    broker.emit_after("enqueue", None, None)
    assert seen == ["a.before", "b.before", "b.after", "a.after"]
    broker.middleware[:] = [m for m in broker.middleware if getattr(m, "name", None) != "a"]  # as tests do
    seen.clear()
    broker.emit_before("enqueue", None, None)
    assert seen == ["b.before"]
    broker.add_middleware(_Refuses())
    with pytest.raises(MiddlewareError):
        broker.emit_before("enqueue", None, None)


def test_the_cached_second_and_its_text_are_replaced_together() -> None:
    """A line of second S never gets second S+1's text, whichever thread formatted last."""
    import logging

    from backlane.core.outcomes import _SecondCachingFormatter

    formatter = _SecondCachingFormatter.like(logging.Formatter())
    assert formatter is not None
    early, late = (logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None) for _ in range(2))
    early.created, late.created = 1_700_000_000.25, 1_700_000_001.75
    early.msecs = late.msecs = 0
    expected = logging.Formatter().formatTime(early)
    formatter.formatTime(late)
    assert formatter.formatTime(early) == expected
    assert formatter.formatTime(late) == logging.Formatter().formatTime(late)
