"""Rate limits per endpoint, held across every worker process (one row per key).

Two things stop a call: our own budget (``limit`` calls per ``window_seconds``,
a sliding-window log of call times) and a wait the server named ("wait for X
seconds", Retry-After), recorded with :meth:`RateLimiter.hold_until` so every
worker waits, not just the one that was told. A refused call raises
:class:`~backlane.errors.RateLimited` with the exact delay until a call is
allowed, so the message is retried then and no earlier.

A hold is never longer than ``retries.max_delay_seconds`` from now
(:func:`~backlane.errors.delay_ceiling_seconds`, an hour by default): a later
hold is not shortened by an earlier-ending one (two workers told different
waits keep the longer), but one recorded further out than the ceiling (a
server's absurd Retry-After, stored before the ceiling existed or was lowered)
is cut back to it at the next call, so no hold outlives the ceiling.

The window arithmetic is the pure :func:`take_slot`, unit-tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from backlane.core.clock import as_utc
from backlane.db.models.resilience import RateLimitRow
from backlane.db.rows import locked_row, peek_row
from backlane.errors import RateLimited, bounded_delay, delay_ceiling_seconds

if TYPE_CHECKING:
    from backlane.core.clock import Clock
    from backlane.db.engine import Database


@dataclass(frozen=True)
class Slot:
    allowed: bool
    #: Seconds until a call would be allowed (0 when allowed).
    wait: float
    #: The call log to store: calls still inside the window, plus this one when allowed.
    calls: list[float]


def take_slot(calls: list[float], now: float, limit: int, window_seconds: float) -> Slot:
    """Allow a call when fewer than ``limit`` calls fall in the last ``window_seconds``."""
    recent = sorted(t for t in calls if t > now - window_seconds)
    if len(recent) < limit:
        return Slot(True, 0.0, [*recent, now])
    return Slot(False, recent[len(recent) - limit] + window_seconds - now, recent)


@dataclass(frozen=True)
class Limit:
    """``calls`` per ``window_seconds`` on one endpoint key; ``calls=None`` only honours server waits."""

    key: str
    calls: int | None
    window_seconds: float = 3600.0


class RateLimiter:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def acquire(self, key: str, limit: int | None, window_seconds: float) -> None:
        """Take one call of ``key``'s budget, or raise RateLimited(delay until one is free)."""
        with self.db.transaction() as session:
            if limit is None:
                row = peek_row(session, RateLimitRow, {"key": key})
                now = self.clock.now()
                if row is None or row.held_until is None or as_utc(row.held_until) <= now:
                    return
            row = locked_row(session, RateLimitRow, {"key": key}, {"calls": [], "updated_at": self.clock.now()})
            now = self.clock.now()
            held = as_utc(row.held_until) if row.held_until else None
            longest = now + timedelta(seconds=delay_ceiling_seconds())
            if held is not None and held > longest:  # further out than any hold may be: cut back
                row.held_until = held = longest
            if held is not None and held > now:
                row.refused += 1
                wait, why = (held - now).total_seconds(), f"the server asked to wait ({row.hold_reason or 'no reason'})"
            elif limit is None:
                return
            else:
                slot = take_slot(list(row.calls or []), now.timestamp(), limit, window_seconds)
                row.calls = slot.calls
                row.updated_at = now
                if slot.allowed:
                    return
                row.refused += 1
                wait, why = slot.wait, f"{limit} calls per {window_seconds:g}s used up"
        raise RateLimited(f"rate limit {key!r}: {why}; next call in {wait:.1f}s", wait)

    def hold_until(self, key: str, until: datetime, reason: str = "") -> None:
        """No call to ``key`` from any worker before ``until`` (a later hold is never shortened,
        except back to the ceiling: no hold ends more than ``retries.max_delay_seconds`` from now)."""
        with self.db.transaction() as session:
            row = locked_row(session, RateLimitRow, {"key": key}, {"calls": [], "updated_at": self.clock.now()})
            longest = self.clock.now() + timedelta(seconds=delay_ceiling_seconds())
            until = min(until, longest)
            held = as_utc(row.held_until) if row.held_until else None
            if held is not None and held > longest:
                held = None
            if held is None or until > held:
                row.held_until = until
                row.hold_reason = reason[:500] or None
            row.updated_at = self.clock.now()

    def hold_for(self, key: str, seconds: float, reason: str = "") -> None:
        self.hold_until(key, self.clock.now() + timedelta(seconds=bounded_delay(seconds, 0.0)), reason)

    @contextmanager
    def guard(self, limit: Limit) -> Iterator[None]:
        """Take a slot, then run the call; a RateLimited from the call holds every worker off."""
        self.acquire(limit.key, limit.calls, limit.window_seconds)
        try:
            yield
        except RateLimited as exc:
            self.hold_for(limit.key, exc.delay_seconds, exc.reason)
            raise

    def state(self, key: str, window_seconds: float | None = None) -> dict[str, Any]:
        with self.db.transaction() as session:
            row = peek_row(session, RateLimitRow, {"key": key})
        now = self.clock.now()
        if row is None:
            return {"key": key, "held_until": None, "calls_in_window": 0, "refused": 0}
        held = as_utc(row.held_until) if row.held_until else None
        calls = list(row.calls or [])
        if window_seconds is not None:
            calls = [t for t in calls if t > now.timestamp() - window_seconds]
        return {
            "key": key,
            "held_until": held if held and held > now else None,
            "hold_reason": row.hold_reason if held and held > now else None,
            "calls_in_window": len(calls),
            "refused": row.refused,
        }


def current_holds(db: Database, now: datetime) -> list[dict[str, Any]]:
    """Every rate limit holding all workers off now (a server's "wait for X seconds"), with
    its time left: ``{"key", "held_until", "left_s", "reason"}``, soonest first."""
    with db.transaction() as session:  # one row per endpoint: a handful
        rows = session.scalars(select(RateLimitRow).where(RateLimitRow.held_until.is_not(None)))
        held = [(row.key, as_utc(row.held_until), row.hold_reason) for row in rows if row.held_until is not None]
    held = [h for h in held if h[1] > now]
    return [
        {"key": key, "held_until": until, "left_s": (until - now).total_seconds(), "reason": reason}
        for key, until, reason in sorted(held, key=lambda h: h[1])
    ]
