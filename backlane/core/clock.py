"""Time, behind a seam.

Everything that asks "what time is it" (leases, intervals, freshness, breakers)
takes a :class:`Clock`, so tests move time forward instead of sleeping. Worker
processes started by acceptance tests share a :class:`FileClock`: the test writes
an offset into a file and every process reads the same shifted time.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to (unit and integration tests)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when


class FileClock:
    """System time shifted by the number of seconds written in a file.

    Re-read at most every 50 ms, so a test advancing time is seen by every process
    within that long, at no measurable cost on the hot path.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0.0
        self._read_at = 0.0

    def now(self) -> datetime:
        mono = time.monotonic()
        if mono - self._read_at > 0.05:
            try:
                self._offset = float(self.path.read_text().strip() or 0)
            except (OSError, ValueError):
                self._offset = 0.0
            self._read_at = mono
        return datetime.now(UTC) + timedelta(seconds=self._offset)

    def advance(self, seconds: float) -> None:
        current = float(self.path.read_text().strip() or 0) if self.path.exists() else 0.0
        self.path.write_text(str(current + seconds))
        self._read_at = 0.0


def default_clock() -> Clock:
    """The system clock, or a :class:`FileClock` when BACKLANE_CLOCK_FILE names one (tests only)."""
    path = os.environ.get("BACKLANE_CLOCK_FILE")
    return FileClock(Path(path)) if path else SystemClock()


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they are stored as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
