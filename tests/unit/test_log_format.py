"""JSON log lines (BACKLANE_LOG_FORMAT=json): one object per line with the outcome's fields, the
trace ids when a span is current, nothing a record carries beyond them; text stays the default."""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from backlane.core import log_format, log_limits, outcomes
from backlane.settings import SettingsError, load_settings
from tests import docs


def _record(message: str = "hello %s", *args: Any, level: int = logging.INFO, **attributes: Any) -> logging.LogRecord:
    record = logging.LogRecord("backlane.test", level, __file__, 1, message, args or ("world",), None)
    record.__dict__.update(attributes)
    return record


def _line(record: logging.LogRecord) -> dict[str, Any]:
    text = log_format.JsonFormatter().format(record)
    assert "\n" not in text and text.isascii()
    entry: dict[str, Any] = json.loads(text)
    return entry


@pytest.fixture
def json_outcomes() -> Iterator[io.StringIO]:
    """The outcome logger writing JSON to a stream of its own, as a worker's handler would."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log_format.JsonFormatter())
    logger = outcomes.logger
    saved = logger.handlers[:], logger.propagate, logger.level
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.handlers[:], logger.propagate, logger.level = saved


def test_a_line_is_time_level_logger_and_message_and_nothing_else() -> None:
    record = _record()
    entry = _line(record)
    assert list(entry) == ["time", "level", "logger", "message"]
    assert entry["level"] == "INFO" and entry["logger"] == "backlane.test" and entry["message"] == "hello world"
    assert entry["time"].endswith("Z")
    written = datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(written.timestamp() - record.created) < 0.001


def test_the_time_is_utc_to_the_millisecond_as_the_cached_second_moves_on() -> None:
    formatter = log_format.JsonFormatter()
    record = _record()
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.5, 1_700_000_061.25):
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        expected = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"
        assert formatter.formatTime(record) == expected


def test_an_outcome_line_carries_the_outcomes_fields_not_its_text(json_outcomes: io.StringIO) -> None:
    outcomes.record("orders", 7, "retry", attempt=2, duration_s=0.0123, kind="transient", reason="503", delay_s=15)
    outcomes.record("orders", 8, "succeeded", attempt=1, duration_s=0.001)
    retry, succeeded = (json.loads(line) for line in json_outcomes.getvalue().splitlines())
    assert retry["level"] == "INFO" and retry["logger"] == "backlane.outcome"
    assert retry["message"] == "orders item 7: retry (503)"
    fields = {k: retry[k] for k in ("pipeline", "item", "outcome", "attempt", "duration_ms")}
    assert fields == {"pipeline": "orders", "item": 7, "outcome": "retry", "attempt": 2, "duration_ms": 12.3}
    assert (retry["error_class"], retry["reason"], retry["retry_in_s"]) == ("transient", "503", 15)
    assert succeeded["message"] == "orders item 8: succeeded" and "reason" not in succeeded


def test_a_failed_outcome_is_a_warning(json_outcomes: io.StringIO) -> None:
    outcomes.record("tracks", "t-1", "failed", attempt=3, duration_s=0.0, kind="permanent", reason="404")
    (entry,) = (json.loads(line) for line in json_outcomes.getvalue().splitlines())
    assert entry["level"] == "WARNING" and entry["outcome"] == "failed" and entry["item"] == "t-1"


def test_batched_outcome_lines_are_json_too() -> None:
    """A worker's outcome lines go through the batching handler's shortcut: with the JSON
    formatter on the target, the batched lines are the same JSON."""
    stream = io.StringIO()
    target = logging.StreamHandler(stream)
    target.setFormatter(log_format.JsonFormatter())
    handler = outcomes.BatchingHandler(target, interval=60)
    logger = outcomes.logger
    saved = logger.handlers[:], logger.propagate, logger.level
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        assert type(handler.formatter) is log_format.JsonFormatter, "kept as it is, not a text copy"
        outcomes.record("orders", 1, "succeeded", attempt=1, duration_s=0.002)
        outcomes.flush_lines()
    finally:
        logger.handlers[:], logger.propagate, logger.level = saved
        handler.close()
    (entry,) = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (entry["pipeline"], entry["item"], entry["outcome"], entry["attempt"]) == ("orders", 1, "succeeded", 1)
    assert entry["duration_ms"] == 2.0


def test_an_exception_is_one_string_field_on_the_same_line() -> None:
    try:
        raise ValueError("the reason\non two lines")
    except ValueError:
        record = _record(exc_info=sys.exc_info())
    entry = _line(record)
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: the reason\non two lines")


def test_a_huge_traceback_keeps_its_end() -> None:
    record = _record(exc_text="Traceback\n" + "x" * 50_000 + "\nValueError: the end")
    entry = _line(record)
    assert len(entry["exception"]) < log_format.MAX_TRACEBACK_CHARS + 100
    assert entry["exception"].startswith("(50,") and entry["exception"].endswith("ValueError: the end")


def test_control_characters_never_leave_the_line_or_reach_a_terminal() -> None:
    hostile = "a\nb\rc\x1b[31mred\x00\x85\u2028\u2029\x1c end"
    text = log_format.JsonFormatter().format(_record("%s", hostile))
    assert len(text.splitlines()) == 1 and text.isascii()
    assert all(ch >= " " for ch in text), "no control character, not even escaped ones raw"
    assert json.loads(text)["message"] == hostile


def test_a_long_message_is_bounded_as_in_text() -> None:
    log_limits.install()
    record = logging.makeLogRecord({"name": "dramatiq", "msg": "body %s", "args": ("x" * 5_000_000,)})
    entry = _line(record)
    assert len(entry["message"]) < log_limits.MAX_LOG_CHARS + 100 and entry["message"].endswith("chars, cut)")


def test_nothing_attached_to_a_record_is_written() -> None:
    """A record's extra attributes (a URL, a password, a settings object) are never written."""
    secret = "amqp://user:hunter2-secret@rabbit:5672/%2F"
    record = _record(password="hunter2-secret", url=secret, settings={"api_key": "sk-hunter2"})
    text = log_format.JsonFormatter().format(record)
    assert "hunter2" not in text
    assert list(json.loads(text)) == ["time", "level", "logger", "message"]


def test_without_opentelemetry_there_are_no_trace_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed: the import fails
    formatter = log_format.JsonFormatter()
    entry = json.loads(formatter.format(_record()))
    assert "trace_id" not in entry and "span_id" not in entry


def test_the_current_spans_trace_and_span_id_are_on_the_line() -> None:
    try:  # the test extra installs it (backlane[tracing]); missing, this test fails, never skips
        from opentelemetry import trace
    except ImportError:
        pytest.fail("opentelemetry is not installed: pip install -e '.[dev]' (the tracing extra brings it)")
    context = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    formatter = log_format.JsonFormatter()
    assert "trace_id" not in json.loads(formatter.format(_record())), "no span current: no ids"
    with trace.use_span(trace.NonRecordingSpan(context)):
        entry = json.loads(formatter.format(_record()))
    assert entry["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert entry["span_id"] == "00f067aa0ba902b7"


@pytest.fixture
def root_handler() -> Iterator[logging.Handler]:
    handler = logging.StreamHandler(io.StringIO())
    text = logging.Formatter("[%(name)s] %(message)s")
    handler.setFormatter(text)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        logging.captureWarnings(False)


def test_text_changes_nothing(root_handler: logging.Handler) -> None:
    before = root_handler.formatter
    log_format.apply("text")
    assert root_handler.formatter is before


def test_json_gives_every_root_handler_the_json_formatter_once(root_handler: logging.Handler) -> None:
    log_format.apply("json")
    formatter = root_handler.formatter
    assert isinstance(formatter, log_format.JsonFormatter)
    log_format.apply("json")
    assert root_handler.formatter is formatter, "idempotent"
    logging.getLogger("backlane.test").warning("in %s", "json")
    stream = root_handler.stream  # type: ignore[attr-defined]
    assert json.loads(stream.getvalue().splitlines()[-1])["message"] == "in json"


def test_json_turns_warnings_into_json_lines(root_handler: logging.Handler) -> None:
    import warnings

    log_format.apply("json")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    stream = root_handler.stream  # type: ignore[attr-defined]
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["logger"] == "py.warnings" and "deprecated thing" in entry["message"]


def test_the_setting_is_text_by_default_and_refuses_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BACKLANE_LOG_FORMAT", raising=False)
    assert load_settings().log_format == "text"
    monkeypatch.setenv("BACKLANE_LOG_FORMAT", "json")
    assert load_settings().log_format == "json"
    monkeypatch.setenv("BACKLANE_LOG_FORMAT", "yaml")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    (line,) = str(raised.value).splitlines()
    assert "BACKLANE_LOG_FORMAT" in line and "'yaml'" in line


def test_json_costs_a_few_microseconds_a_line() -> None:
    """Not a benchmark (docs/benchmarks.md has the worker's figures): a bound that a formatter
    doing something slow per line (an import, a stack walk, a settings read) would exceed."""
    formatter = log_format.JsonFormatter()
    record = _record(backlane={"pipeline": "orders", "item": 1, "outcome": "succeeded", "attempt": 1})
    started = time.perf_counter()
    for _ in range(2000):
        formatter.format(record)
    assert (time.perf_counter() - started) / 2000 < 200e-6


def test_the_operating_pages_example_is_the_line_an_outcome_gives(json_outcomes: io.StringIO) -> None:
    example = json.loads(docs.block("docs/operating.md", "json", '"logger":"backlane.outcome"'))
    outcomes.record(
        example["pipeline"],
        example["item"],
        example["outcome"],
        attempt=example["attempt"],
        duration_s=example["duration_ms"] / 1000,
        kind=example["error_class"],
        reason=example["reason"],
        delay_s=example["retry_in_s"],
    )
    (entry,) = (json.loads(line) for line in json_outcomes.getvalue().splitlines())
    tracing = {"trace_id", "span_id"}
    assert {k: v for k, v in entry.items() if k not in tracing | {"time"}} == {
        k: v for k, v in example.items() if k not in tracing | {"time"}
    }
    assert list(entry) == [k for k in example if k not in tracing], "the same fields in the same order"


@pytest.mark.parametrize(("value", "written"), [(None, False), ("false", False), ("true", True)])
def test_httpx_writes_its_line_per_request_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, value: str | None, written: bool
) -> None:
    from backlane.app import apply_log_levels

    if value is not None:
        monkeypatch.setenv("BACKLANE_LOG_HTTP_REQUESTS", value)
    httpx_logger = logging.getLogger("httpx")
    monkeypatch.setattr(httpx_logger, "level", httpx_logger.level)  # restored after the test
    apply_log_levels(load_settings())
    assert httpx_logger.isEnabledFor(logging.INFO) is written
    assert httpx_logger.isEnabledFor(logging.WARNING), "httpx's warnings are written either way"
