"""A failure of one kind is written once per interval, the next one with how many were not shown."""

from __future__ import annotations

import logging

import pytest

from backlane.core import log_repeats
from backlane.core.log_repeats import RepeatedFailures, Repeats


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logged() -> tuple[logging.Logger, Lines, list[float]]:
    now = [1000.0]
    handler = Lines()
    handler.addFilter(RepeatedFailures(Repeats(60, clock=lambda: now[0])))
    logger = logging.getLogger("tests.log_repeats")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.DEBUG)
    return logger, handler, now


def _fail(logger: logging.Logger, message: str = "message %s", *args: object) -> None:
    try:
        raise ConnectionRefusedError("the database is away")
    except ConnectionRefusedError:
        logger.error(message, *(args or (object(),)), exc_info=True)


Logged = tuple[logging.Logger, Lines, list[float]]


def test_one_traceback_per_kind_per_interval_and_then_the_count(logged: Logged) -> None:
    logger, handler, now = logged
    for _ in range(500):  # 16 threads failing every message for a minute
        _fail(logger)
        now[0] += 0.1
    assert len(handler.lines) == 1 and "Traceback" in handler.lines[0]
    now[0] += 11
    _fail(logger)
    assert len(handler.lines) == 2
    assert "(499 more like this in the last 61 s, not shown)" in handler.lines[1]
    assert "Traceback" in handler.lines[1], "the interval's one line keeps its traceback"


def test_other_kinds_and_info_lines_pass(logged: tuple[logging.Logger, Lines, list[float]]) -> None:
    logger, handler, _ = logged
    _fail(logger, "discover %s failed", "orders")
    _fail(logger, "discover %s failed", "orders")
    _fail(logger, "discover %s failed", "catalog")  # another pipeline: another kind
    logger.error("no exception")
    for _ in range(3):
        logger.info("progress %s", 1)
    assert [line.splitlines()[0] for line in handler.lines] == [
        "discover orders failed",
        "discover catalog failed",
        "no exception",
        "progress 1",
        "progress 1",
        "progress 1",
    ]


def test_outcome_lines_are_never_held_back(logged: tuple[logging.Logger, Lines, list[float]]) -> None:
    logger, handler, _ = logged
    for item in range(5):
        logger.warning("outcome", extra={"backlane": {"outcome": "retrying", "item": item}})
    assert len(handler.lines) == 5


def test_kinds_are_bounded(logged: tuple[logging.Logger, Lines, list[float]]) -> None:
    logger, handler, _ = logged
    [filter_] = handler.filters
    assert isinstance(filter_, RepeatedFailures)
    names = [a + b + c for a in "abcdefghijklmnop" for b in "abcdefghijklmnop" for c in "abcdefghijklmnop"]
    for name in names[: log_repeats.MAX_KINDS * 3]:  # names (no digits) are kinds of their own
        logger.warning("queue %s refused", name)
    assert len(filter_.repeats) == log_repeats.MAX_KINDS
    assert len(handler.lines) == log_repeats.MAX_KINDS * 3


def test_install_sets_the_interval_once_per_handler_and_zero_writes_every_line() -> None:
    root = logging.getLogger()
    handler = Lines()
    root.addHandler(handler)
    try:
        log_repeats.install(60)
        log_repeats.install(30)
        assert [f.interval for f in handler.filters if isinstance(f, RepeatedFailures)] == [30]
        log_repeats.install(0)
        away = {"pipeline": "p", "outcome": "waiting", "error_class": "unavailable", "reason": "away"}
        assert all(log_repeats.admit_outcome(dict(away)) for _ in range(3))
    finally:
        root.removeHandler(handler)
        log_repeats.install(0)


def test_an_outage_holds_back_unavailable_outcomes_and_dramatiq_retry_lines(
    logged: tuple[logging.Logger, Lines, list[float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, handler, now = logged
    [filter_] = handler.filters
    assert isinstance(filter_, RepeatedFailures)
    monkeypatch.setattr(log_repeats, "REPEATS", filter_.repeats)
    retries = logging.getLogger(log_repeats.RETRIES_LOGGER)
    monkeypatch.setattr(retries, "handlers", [handler])
    monkeypatch.setattr(retries, "propagate", False)
    monkeypatch.setattr(retries, "level", logging.INFO)
    away = {"pipeline": "orders", "outcome": "waiting", "error_class": "unavailable", "reason": "database unavailable"}
    written = []
    for item in range(100):
        written.append(log_repeats.admit_outcome({**away, "item": item}))
        retries.info(log_repeats.RETRYING, f"5f0c{item}e-21", 300)
        own = {"pipeline": "orders", "outcome": "failed", "error_class": "permanent", "reason": "400", "item": item}
        assert log_repeats.admit_outcome(own), "an item's own failure is always written"
    assert written == [True] + [False] * 99
    assert len(handler.lines) == 1, "one retry line"
    now[0] += 61
    later = {**away, "item": 100}
    assert log_repeats.admit_outcome(later) and later["not_shown"] == 99
    retries.info(log_repeats.RETRYING, "a-1", 300)
    assert handler.lines[-1].endswith("(99 more like this in the last 61 s, not shown)")


def test_a_record_is_counted_once_whatever_the_number_of_handlers() -> None:
    repeats = Repeats(60, clock=lambda: 0.0)
    console, file = Lines(), Lines()
    for handler in (console, file):
        handler.addFilter(RepeatedFailures(repeats))
    logger = logging.getLogger("tests.log_repeats.two_handlers")
    logger.handlers, logger.propagate = [console, file], False
    for _ in range(3):
        logger.error("the database is away")
    assert console.lines == file.lines == ["the database is away"]
