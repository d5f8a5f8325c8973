"""One line per failure kind per interval, with a count, instead of a traceback per attempt.

While PostgreSQL or an upstream API is away, every worker thread fails every message it takes
and Dramatiq logs each failure with its traceback ("Failed to process message … with unhandled
exception."), and every tick of every pipeline logs its own: a 3-minute database outage wrote
60,508 lines (14.7 MB) with 2 workers x 8 threads, the one line that said what was wrong buried
among them, and each attempt's outcome line ("waiting", database unavailable) and Dramatiq's
"Retrying message …" line came with it. :class:`RepeatedFailures` is a handler filter that keeps
the first record of a kind in each interval, drops the repeats, and adds to the first record of
the next interval how many it dropped: "… (1,234 more like this in the last 61 s, not shown)".

What it holds back: warnings and errors; an item's outcome line only when its error class is
``unavailable`` (a dependency is away: the line says nothing of the item); Dramatiq's retry line.
An item's other outcome lines (it failed for good, an API refused it, a transient error of its
own) are always written: they name the item an operator looks for.

A *kind* is the logger, the message template (not the formatted message, so every message's own
id does not make a new kind), the exception's class, and the template's text arguments that are
names, not ids (no digit: a pipeline's name, so two pipelines failing are two kinds); for an
outcome line, its pipeline, outcome and reason. Kinds are bounded (the least recently seen is
forgotten), so a template that formats unique text cannot grow the filter.

The count of the very last interval of an outage is written only if the failure comes back; the
metrics (``backlane_outcomes_total``) and the status count every failure.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: How many kinds are remembered at once.
MAX_KINDS = 512
#: A text argument up to this long is part of a kind (a pipeline's or queue's name).
MAX_KIND_ARG = 100

#: The outcome's error class of a dependency that is away (the database, the broker, an open breaker).
UNAVAILABLE = "unavailable"
#: Dramatiq's line for every retry it schedules (the outcome line already says it, with the reason).
RETRIES_LOGGER = "dramatiq.middleware.retries.Retries"
RETRYING = "Retrying message %r in %d milliseconds."
_DIGIT = re.compile(r"[0-9]")
#: The record's attribute that keeps the decision, so each record counts once whatever the handlers.
_DECIDED = "_backlane_repeat_admitted"

Kind = tuple[str, str, str, tuple[str, ...]]


@dataclass
class _Seen:
    since: float
    dropped: int = 0


class Repeats:
    """The kinds seen in this process: which to write, and how many were held back."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._kinds: OrderedDict[Kind, _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, kind: Kind) -> tuple[bool, int, float]:
        """Whether to write a record of ``kind`` now, and how many of it were held back in how
        many seconds since the last one written."""
        if self.interval <= 0:
            return True, 0, 0.0
        now = self._clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen.since < self.interval:
                seen.dropped += 1
                self._kinds.move_to_end(kind)
                return False, 0, 0.0
            dropped, elapsed = (seen.dropped, now - seen.since) if seen is not None else (0, 0.0)
            self._kinds[kind] = _Seen(now)
            self._kinds.move_to_end(kind)
            while len(self._kinds) > MAX_KINDS:
                self._kinds.popitem(last=False)
        return True, dropped, elapsed

    def __len__(self) -> int:
        return len(self._kinds)


class RepeatedFailures(logging.Filter):
    """A handler filter: a kind's first record per interval passes, the rest are counted."""

    def __init__(self, repeats: Repeats) -> None:
        super().__init__()
        self.repeats = repeats

    @property
    def interval(self) -> float:
        return self.repeats.interval

    def filter(self, record: logging.LogRecord) -> bool:
        decided = getattr(record, _DECIDED, None)
        if decided is not None:  # another handler's filter counted this record already
            return bool(decided)
        kind = _kind_of(record)
        admitted = True
        if kind is not None:
            admitted, dropped, elapsed = self.repeats.admit(kind)
            if admitted and dropped:
                _say_dropped(record, dropped, elapsed)
        setattr(record, _DECIDED, admitted)
        return admitted


#: This process's kinds, shared by its handlers' filters and the outcome lines.
REPEATS = Repeats(0)


def admit_outcome(fields: dict[str, Any]) -> bool:
    """Whether to write an item's outcome line: always, unless its error class says a dependency
    is away and a line like it was written less than an interval ago. An admitted line that
    follows held-back ones says how many in ``not_shown``."""
    if fields.get("error_class") != UNAVAILABLE or REPEATS.interval <= 0:
        return True
    admitted, dropped, _ = REPEATS.admit(_outcome_kind(fields))
    if admitted and dropped:
        fields["not_shown"] = dropped
    return admitted


def _outcome_kind(fields: dict[str, Any]) -> Kind:
    reason = str(fields.get("reason", ""))[: MAX_KIND_ARG * 3]
    return ("backlane.outcome", str(fields.get("pipeline")), str(fields.get("outcome")), (reason,))


def _kind_of(record: logging.LogRecord) -> Kind | None:
    """The record's kind, or None for a record that is always written."""
    fields = getattr(record, "backlane", None)
    if type(fields) is dict and "outcome" in fields:
        return None  # outcomes.record() asked admit_outcome() already
    if record.levelno < logging.WARNING and not (record.name == RETRIES_LOGGER and record.msg == RETRYING):
        return None
    exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] is not None else ""
    args = record.args if isinstance(record.args, tuple) else ()
    names = tuple(a for a in args if isinstance(a, str) and len(a) <= MAX_KIND_ARG and not _DIGIT.search(a))
    return (record.name, str(record.msg), exc, names)


def _say_dropped(record: logging.LogRecord, dropped: int, elapsed: float) -> None:
    """The record's message gains the count; formatted here so a mapping's args stay intact."""
    record.msg = f"{record.getMessage()} ({dropped:,} more like this in the last {elapsed:.0f} s, not shown)"
    record.args = ()


def install(interval: float) -> None:
    """Hold back repeats for ``interval`` seconds (0: never) in every handler of the root logger
    and in the outcome lines (idempotent; a new interval replaces the old)."""
    REPEATS.interval = interval
    for handler in logging.getLogger().handlers:
        if interval > 0 and not any(isinstance(f, RepeatedFailures) for f in handler.filters):
            handler.addFilter(RepeatedFailures(REPEATS))
