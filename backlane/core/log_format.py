"""JSON log lines (``BACKLANE_LOG_FORMAT=json``): one object per line, for log pipelines.

Loki, Elasticsearch or CloudWatch filter by field without parsing text: each line is
``{"time", "level", "logger", "message"}`` (time in ISO 8601, UTC, to the millisecond),
plus, on an item's outcome line, the outcome's own fields (``pipeline``, ``item``,
``outcome``, ``attempt``, ``duration_ms``, and ``error_class``, ``reason``, ``retry_in_s``
when it did not succeed), taken from the record (:mod:`backlane.core.outcomes` gives it
them), not parsed from its text; ``exception`` (the traceback) when there is one; and
``trace_id``/``span_id`` when an OpenTelemetry span is current (read only when
``opentelemetry`` is installed).

Nothing else a record carries is written (no ``extra`` attributes, no arguments), so an
object attached to a record by some library cannot put a secret in the log. Values are
bounded as every line is (:mod:`backlane.core.log_limits`) and JSON-escaped in ASCII, so
no value ends a line early or reaches a terminal as a control character.

The text format stays the default: :func:`apply` changes nothing unless asked for JSON.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from backlane.core import log_limits

TEXT = "text"
JSON = "json"

#: Longest traceback kept in a JSON line, characters; its end (the exception itself) is kept.
MAX_TRACEBACK_CHARS = 8000

_encode = json.JSONEncoder(default=str, separators=(",", ":"), ensure_ascii=True).encode


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module's docstring for its fields)."""

    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int | None, str] = (None, "")
        self._current_span = _span_reader()

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "backlane", None)
        entry: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name}
        if type(fields) is dict and "outcome" in fields:
            entry["message"] = _outcome_message(fields)
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = cut_head(record.exc_text, MAX_TRACEBACK_CHARS)
        if record.stack_info:
            entry["stack"] = cut_head(self.formatStack(record.stack_info), MAX_TRACEBACK_CHARS)
        if self._current_span is not None:
            ids = _trace_ids(self._current_span)
            if ids is not None:
                entry["trace_id"], entry["span_id"] = ids
        return _encode(entry)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """ISO 8601 in UTC with milliseconds (``2026-12-02T07:11:31.123Z``); the date and time
        are formatted once a second, not once a line."""
        second = int(record.created)
        cached, stamp = self._second  # one tuple, read and replaced whole: threads never mix two seconds
        if second != cached:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, stamp)
        return f"{stamp}.{int(record.msecs):03d}Z"


def _outcome_message(fields: dict[str, Any]) -> str:
    """A short sentence for people reading the line; the fields beside it hold the same."""
    message = f"{fields.get('pipeline')} item {fields.get('item')}: {fields.get('outcome')}"
    reason = fields.get("reason")
    return f"{message} ({reason})" if reason else message


def cut_head(text: str, limit: int) -> str:
    """``text`` itself when short enough, else its end (a traceback's last lines say what failed)."""
    if len(text) <= limit:
        return text
    return f"({len(text):,} chars, cut) …{text[-limit:]}"


def _span_reader() -> Callable[[], Any] | None:
    """OpenTelemetry's ``get_current_span`` when the package is installed, else None."""
    try:
        import opentelemetry.trace as trace
    except ImportError:
        return None
    return trace.get_current_span


def _trace_ids(current_span: Callable[[], Any]) -> tuple[str, str] | None:
    """The current span's trace and span id in W3C's hex form, None when there is no span."""
    try:
        context = current_span().get_span_context()
    except Exception:  # a broken tracer must not cost the log line
        return None
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def apply(log_format: str) -> None:
    """Write this process's log lines in ``log_format``: for JSON, every handler of the root
    logger and of the outcome logger gets :class:`JsonFormatter` (idempotent), and Python's
    warnings become log records (else they would be text lines among the JSON). Text: nothing
    changes, whoever configured the handlers keeps their format."""
    if log_format != JSON:
        return
    log_limits.install()  # every message bounded, as in text
    formatter: JsonFormatter | None = None
    for handler in logging.getLogger().handlers + logging.getLogger("backlane.outcome").handlers:
        if not isinstance(handler.formatter, JsonFormatter):
            formatter = formatter or JsonFormatter()
            handler.setFormatter(formatter)
    logging.captureWarnings(True)
