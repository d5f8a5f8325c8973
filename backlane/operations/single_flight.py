"""A value computed by one caller at a time and reused for a few seconds.

The worker's /health and /metrics answer from it: a flood of probes costs one
computation per ``ttl``, never one per request, and never several at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """``get()`` returns the last value while it is younger than ``ttl`` seconds; otherwise one
    caller computes a new one while the others get the last value if it is younger than
    ``ttl + stale`` (stale but recent), or wait for the one in flight up to ``wait`` seconds and
    then get ``overdue()``. ``compute`` should not raise; if it does, its caller sees the error
    and the waiters try again."""

    def __init__(
        self, compute: Callable[[], T], *, ttl: float, stale: float, wait: float, overdue: Callable[[], T]
    ) -> None:
        self._compute, self._overdue = compute, overdue
        self.ttl, self.stale, self.wait = ttl, stale, wait
        self._cond = threading.Condition()
        self._value: T | None = None
        self._at = float("-inf")
        self._generation = 0
        self._computing = False
        #: How many times ``compute`` ran (tests and the benchmark read it).
        self.computations = 0

    def get(self) -> T:
        with self._cond:
            deadline = time.monotonic() + self.wait
            seen = self._generation
            while True:
                now = time.monotonic()
                fresh = self._value is not None and now - self._at <= self.ttl
                if fresh or (self._generation != seen and self._value is not None):
                    return self._value  # type: ignore[return-value]
                if not self._computing:
                    self._computing = True
                    break
                if self._value is not None and now - self._at <= self.ttl + self.stale:
                    return self._value
                if now >= deadline:
                    return self._overdue()
                self._cond.wait(deadline - now)
        try:
            value = self._compute()
        except BaseException:
            with self._cond:
                self._computing = False
                self._cond.notify_all()
            raise
        with self._cond:
            self._value, self._at = value, time.monotonic()
            self._generation += 1
            self.computations += 1
            self._computing = False
            self._cond.notify_all()
        return value

    def get_within(self, seconds: float, default: T) -> T:
        """:meth:`get`, but never waiting more than ``seconds``: then the last value while it is
        younger than ``ttl + stale``, else ``default``. The computation goes on in its own thread,
        and its value serves the callers after it."""
        got: list[T] = []
        thread = threading.Thread(target=lambda: got.append(self.get()), name="single-flight", daemon=True)
        thread.start()
        thread.join(seconds)
        if got:
            return got[0]
        with self._cond:
            if self._value is not None and time.monotonic() - self._at <= self.ttl + self.stale:
                return self._value
        return default
