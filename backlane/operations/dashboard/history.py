"""The last hour of each pipeline, kept in the dashboard's memory for its charts.

Nothing the dashboard can read holds this history: the workers' ``backlane_items_total``
counters are cumulative totals of now, RabbitMQ's management API gives each queue's depth
of now, and the database keeps no row per try (a first-try success writes nothing, a
deleted row leaves only a tally). So the dashboard samples them, every
:data:`SAMPLE_SECONDS` from a background thread (:class:`Sampler`) and at each page view,
and keeps per pipeline one bucket per minute of the last :data:`WINDOW_MINUTES`: the items
that succeeded, failed for good and were retried in that minute (the counters' increase
since the previous sample), and the queue's depths at the minute's last sample.

The limits, said on the page: history starts when the dashboard process starts (a
minute before is "no data", never 0), each dashboard process has its own, and a counter
that goes down (a worker restarted) counts nothing for that sample rather than a guess.
Memory is bounded: at most :data:`WINDOW_MINUTES` buckets per pipeline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

logger = logging.getLogger("backlane.dashboard")

#: The series of the items chart, in the order they stack, and the outcome counted.
SERIES = ("succeeded", "failed", "retried")
#: The queue depths of the depth chart (as ``backlane status`` names them).
DEPTHS = ("ready", "unacked", "delayed", "dead_lettered")
#: How much history is kept and charted, minutes.
WINDOW_MINUTES = 60
#: The background sampler's period, seconds (each page view samples too).
SAMPLE_SECONDS = 10.0

Bucket = dict[str, float | None]


@dataclass(frozen=True)
class Slot:
    """One minute of a chart: its start (epoch seconds) and its values, None when unsampled."""

    minute: int
    values: Mapping[str, float | None] | None

    @property
    def start_s(self) -> float:
        return self.minute * 60.0


class History:
    """Per pipeline, the last :data:`WINDOW_MINUTES` minutes of item counts and queue depths."""

    def __init__(self, clock: Callable[[], float] = time.time, minutes: int = WINDOW_MINUTES) -> None:
        self._clock, self._minutes = clock, minutes
        self._lock = threading.Lock()
        self.started_at = clock()
        self._counts: dict[str, dict[int, Bucket]] = {}
        self._depths: dict[str, dict[int, Bucket]] = {}
        #: (pipeline, series) -> (source, cumulative value at the previous sample).
        self._previous: dict[tuple[str, str], tuple[str, float]] = {}

    def record_counts(self, pipeline: str, source: str, totals: Mapping[str, float | None]) -> None:
        """Record cumulative ``totals`` by series (``source``: where they were read, so that a
        switch between the workers' counters and the rows' counts is never taken for work done)."""
        now = self._clock()
        minute = int(now // 60)
        with self._lock:
            bucket = self._bucket(self._counts, pipeline, minute)
            for series in SERIES:
                value = totals.get(series)
                if value is None:
                    continue
                key = (pipeline, series)
                previous = self._previous.get(key)
                self._previous[key] = (source, value)
                if previous is None or previous[0] != source:
                    bucket.setdefault(series, 0.0)
                    continue
                increase = max(0.0, value - previous[1])  # down: a worker restarted; nothing invented
                bucket[series] = (bucket.get(series) or 0.0) + increase

    def record_depths(self, pipeline: str, depths: Mapping[str, float | None]) -> None:
        """Record a queue's depths of now: the minute's last sample is the one charted."""
        minute = int(self._clock() // 60)
        with self._lock:
            bucket = self._bucket(self._depths, pipeline, minute)
            for name in DEPTHS:
                value = depths.get(name)
                bucket[name] = None if value is None else float(value)

    def counts(self, pipeline: str) -> list[Slot]:
        """The window's minutes, oldest first, with the items of each (None: not sampled)."""
        return self._slots(self._counts, pipeline)

    def depths(self, pipeline: str) -> list[Slot]:
        return self._slots(self._depths, pipeline)

    def _slots(self, store: dict[str, dict[int, Bucket]], pipeline: str) -> list[Slot]:
        last = int(self._clock() // 60)
        with self._lock:
            buckets = store.get(pipeline, {})
            window = range(last - self._minutes + 1, last + 1)
            return [Slot(m, dict(buckets[m]) if m in buckets else None) for m in window]

    def _bucket(self, store: dict[str, dict[int, Bucket]], pipeline: str, minute: int) -> Bucket:
        buckets = store.setdefault(pipeline, {})
        for old in [m for m in buckets if m <= minute - self._minutes]:
            del buckets[old]  # bounded: the window's minutes only
        return buckets.setdefault(minute, {})


class Sampler:
    """Calls ``sample`` every ``seconds`` on a daemon thread until :meth:`stop`; a failing
    sample is logged once per kind and the next one tries again."""

    def __init__(self, sample: Callable[[], None], seconds: float = SAMPLE_SECONDS) -> None:
        self._sample, self._seconds = sample, seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failed: set[str] = set()

    def start(self) -> None:
        """Start the thread (once; a second call does nothing)."""
        with self._lock:
            if self._thread is not None or self._seconds <= 0:
                return
            self._thread = threading.Thread(target=self._run, name="backlane-dashboard-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sample()
            except Exception as exc:  # the next period tries again; the page says "?" meanwhile
                kind = type(exc).__name__
                if kind not in self._failed:
                    self._failed.add(kind)
                    logger.warning("dashboard: a history sample failed (%s); trying again every period", kind)
            self._stop.wait(self._seconds)
