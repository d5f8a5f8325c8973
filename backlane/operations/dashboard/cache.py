"""Keeping RabbitMQ and the database unbothered by many open dashboards.

:class:`Cached` remembers what a slow read returned for a few seconds (the management
API's queue depths, the broker check), so ten browsers refreshing every five seconds
cost RabbitMQ one request per period, not ten. :class:`Throughput` turns successive
done/failed counts into items per minute, without storing anything in the database.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

#: Throughput is measured over at most this long, seconds (the oldest sample kept).
THROUGHPUT_WINDOW_S = 300.0


class Cached(Generic[T]):
    """``read()`` at most once per ``seconds``; concurrent callers wait for the one read."""

    def __init__(self, read: Callable[[], T], seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._read, self._seconds, self._clock = read, seconds, clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at: float | None = None

    def get(self) -> T:
        with self._lock:
            now = self._clock()
            if self._at is None or now - self._at >= self._seconds:
                self._value, self._at = self._read(), now
            return self._value  # type: ignore[return-value]


class Throughput:
    """Items finished per minute, per pipeline, from the counts each page view reads (rows
    done + failed, or the workers' counters)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, window_s: float = THROUGHPUT_WINDOW_S) -> None:
        self._clock, self._window = clock, window_s
        self._samples: dict[str, deque[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def per_minute(self, pipeline: str, finished: float | None) -> float | None:
        """Record ``finished`` (done + failed, now) and return the rate since the oldest sample
        in the window; None until two samples at least a second apart exist."""
        if finished is None:
            return None
        now = self._clock()
        with self._lock:
            samples = self._samples.setdefault(pipeline, deque())
            samples.append((now, finished))
            while len(samples) > 2 and now - samples[0][0] > self._window:
                samples.popleft()
            first_at, first = samples[0]
        elapsed = now - first_at
        if elapsed < 1.0 or finished < first:  # too soon to tell, or the counts were reset
            return None
        return (finished - first) * 60.0 / elapsed
