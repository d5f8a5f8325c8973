"""One log line per item outcome, and the counters behind the metrics.

Every per-item attempt ends here exactly once, with the pipeline, the item,
the attempt number, the duration and, for failures, the error class and reason,
so an operator can grep one item's whole history. An attempt that is not a
first-try success is also kept per item for the dashboard (:mod:`backlane.core.attempts`).

In a worker process the lines are written in batches (:func:`batch_lines`): the
dramatiq CLI relays every line a worker process writes through a pipe to its
parent, one send, one receive and one write per line, which cost a no-op item
more CPU than all of backlane's own processing. Batched, a line reaches the log
at most ``OUTCOME_FLUSH_SECONDS`` later (other log lines written meanwhile may come
before it), outcome lines stay in the order they were recorded, and everything held
is written when the worker shuts down; a worker killed outright (SIGKILL) loses at
most the last ``OUTCOME_FLUSH_SECONDS`` of outcome lines, not the items.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from backlane.core import attempts, log_limits, log_repeats
from backlane.operations import metrics

logger = logging.getLogger("backlane.outcome")

#: Called with every outcome's fields, in the thread of the attempt, before its line is written
#: (the tracing middleware puts them on the attempt's span); empty unless something listens.
observers: list[Callable[[dict[str, Any]], None]] = []

#: Longest an outcome line waits in a worker process before it is written, seconds.
OUTCOME_FLUSH_SECONDS = 0.2
#: A batch this long is written at once, without waiting for the next flush.
OUTCOME_BATCH_LINES = 200


def record(
    pipeline: str,
    item: Any,
    outcome: str,
    *,
    attempt: int,
    duration_s: float,
    kind: str | None = None,
    reason: str | None = None,
    delay_s: float | None = None,
) -> None:
    """Log the outcome (``succeeded``, ``retry``, ``waiting``, ``expired``, ``failed``) of one attempt."""
    fields: dict[str, Any] = {
        "pipeline": pipeline,
        "item": log_limits.cut_value(item),
        "outcome": outcome,
        "attempt": attempt,
        "duration_ms": round(duration_s * 1000, 1),
    }
    if kind:
        fields["error_class"] = kind
    if reason:
        fields["reason"] = log_limits.cut(reason)
    if delay_s is not None:
        fields["retry_in_s"] = round(delay_s, 3)
    for observer in observers:
        observer(fields)
    level = logging.WARNING if outcome == "failed" else logging.INFO
    if logger.isEnabledFor(level) and log_repeats.admit_outcome(fields):
        line = _encode(fields)
        handlers = logger.handlers
        batching = handlers[0] if len(handlers) == 1 and not logger.propagate and not logger.filters else None
        if type(batching) is BatchingHandler and batching.copies_records():
            batching.add(level, line, fields)  # a worker's only outcome handler: its shortcut
        else:
            logger.handle(_made_record(level, line, fields))
    metrics.observe_outcome(pipeline, outcome, kind, duration_s)
    attempts.note(pipeline, item, outcome, attempt, reason)


_encode = json.JSONEncoder(default=str, separators=(",", ":")).encode


def _made_record(level: int, line: str, fields: dict[str, Any]) -> logging.LogRecord:
    """The outcome's record, as logger.log() would make it without its caller lookup (a stack
    walk per line): the caller is always record()."""
    return logger.makeRecord(logger.name, level, __file__, 0, "%s", (line,), None, "record", {"backlane": fields})


class BatchingHandler(logging.Handler):
    """Writes the outcome lines through ``target`` (its stream and formatter) in batches.

    One write per batch instead of one per line, and the lock ``target`` holds while
    writing is taken once per batch, not by every worker thread for every item."""

    def __init__(self, target: logging.StreamHandler, interval: float = OUTCOME_FLUSH_SECONDS) -> None:  # type: ignore[type-arg]
        super().__init__()
        self.target = target
        self.setFormatter(_SecondCachingFormatter.like(target.formatter))
        # What every outcome record shares, made once (by the record factory in place): see add().
        template = _made_record(logging.INFO, "", {})
        self._record_class, self._template = type(template), template.__dict__
        self.interval = interval
        self._lines: collections.deque[str] = collections.deque()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flush_every, name="backlane-outcome-log", daemon=True)
        self._thread.start()

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        """As Handler.handle, without taking the handler's lock: appending to a deque is atomic."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def copies_records(self) -> bool:
        """Whether add() may copy its template: not once the user installed a record factory."""
        return logging.getLogRecordFactory() is self._record_class

    def add(self, level: int, line: str, fields: dict[str, Any]) -> None:
        """record()'s shortcut when this is the outcome logger's only handler: the same record
        (the factory's class, the same attributes) copied from a template instead of built by
        LogRecord's constructor, which recomputes file, module and process names for every line
        (a fifth of a no-op item's own CPU in a worker)."""
        if level < self.level:
            return
        record = self._record_class.__new__(self._record_class)
        attributes = record.__dict__
        attributes.update(self._template)
        now = time.time()
        thread = threading.current_thread()
        attributes.update(
            levelno=level,
            levelname=logging.getLevelName(level),
            args=(line,),
            created=now,
            msecs=int((now - int(now)) * 1000) + 0.0,  # as LogRecord computes it
            relativeCreated=(now - _start_time) * 1000,
            thread=thread.ident,
            threadName=thread.name,
            backlane=fields,
        )
        self.handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record) + self.target.terminator)
        except Exception:
            self.handleError(record)
            return
        if len(self._lines) >= OUTCOME_BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        with self._write_lock:
            lines = []
            with contextlib.suppress(IndexError):
                while True:
                    lines.append(self._lines.popleft())
            if not lines:
                return
            # The stream may be gone at exit (the dramatiq CLI closes a worker's pipe).
            with contextlib.suppress(OSError, ValueError), self.target.lock or contextlib.nullcontext():
                self.target.stream.write("".join(lines))
                self.target.flush()

    def _flush_every(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()


class _SecondCachingFormatter(logging.Formatter):
    """A formatter like the target's whose default timestamp formats the date and time once a
    second instead of once a line (time.strftime is most of formatting an outcome line)."""

    #: (second, its text), replaced as one: two attributes could be left holding one second's
    #: number under another second's text by two threads crossing a second boundary.
    _cached: tuple[int, str] | None = None

    @classmethod
    def like(cls, formatter: logging.Formatter | None) -> logging.Formatter | None:
        if type(formatter) is not logging.Formatter or formatter.datefmt is not None:
            return formatter  # anything else is kept as it is
        copy = cls()
        copy.__dict__.update(formatter.__dict__)
        return copy

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached = self._cached
        if cached is None or cached[0] != second:  # a race formats the same second twice, no more
            cached = self._cached = (second, time.strftime(self.default_time_format, self.converter(second)))
        return (self.default_msec_format or "%s,%03d") % (cached[1], record.msecs)


_start_time: float = logging._startTime  # type: ignore[attr-defined]  # relativeCreated's origin


def batch_lines() -> BatchingHandler | None:
    """From now on this process's outcome lines are written in batches through the root
    logger's stream handler (the worker's pipe to the dramatiq parent). Idempotent; None
    (nothing changed) when the root logger has no stream handler to write through."""
    for handler in logger.handlers:
        if isinstance(handler, BatchingHandler):
            return handler
    target = next((h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler), None)
    if target is None:
        return None
    batching = BatchingHandler(target)
    batching.setLevel(target.level)
    logger.addHandler(batching)
    logger.propagate = False
    return batching


def flush_lines() -> None:
    """Write every outcome line held for a batch now (a worker shutting down)."""
    for handler in logger.handlers:
        if isinstance(handler, BatchingHandler):
            handler.flush()
