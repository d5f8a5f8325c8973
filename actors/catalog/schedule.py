"""The arithmetic of catalog sections, kept pure so it is unit-tested without a database.

A section is due when its interval has passed since its last success (or it has
never succeeded, or an operator asked for it); discover claims the most overdue
ones while fewer than ``max_concurrent`` refreshes hold a lease. A section is
degraded when its last success is older than max(floor, factor x interval) and
unhealthy when it never succeeded or its source's breaker is open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from backlane import Health

HEALTHY, DEGRADED, UNHEALTHY, DISABLED = Health.HEALTHY, Health.DEGRADED, Health.UNHEALTHY, Health.DISABLED


@dataclass(frozen=True)
class SectionState:
    """What claiming needs to know about one section."""

    name: str
    enabled: bool
    interval: timedelta
    last_success_at: datetime | None = None
    requested_at: datetime | None = None
    lease_until: datetime | None = None
    hold_until: datetime | None = None


def next_due(
    last_success_at: datetime | None, interval: timedelta, requested_at: datetime | None = None
) -> datetime | None:
    """When the section is due next; None means now (never succeeded, or requested)."""
    if last_success_at is None or requested_at is not None:
        return None
    return last_success_at + interval


def is_due(state: SectionState, now: datetime) -> bool:
    due_at = next_due(state.last_success_at, state.interval, state.requested_at)
    return due_at is None or due_at <= now


def is_leased(state: SectionState, now: datetime) -> bool:
    return state.lease_until is not None and state.lease_until > now


def claimable(state: SectionState, now: datetime) -> bool:
    """Due, enabled, not running and not waiting for its own retry."""
    held = state.hold_until is not None and state.hold_until > now
    return state.enabled and not is_leased(state, now) and not held and is_due(state, now)


def plan_claims(states: list[SectionState], now: datetime, max_concurrent: int) -> list[str]:
    """Names to claim now: the most overdue claimable sections, within the free slots.

    Requested and never-refreshed sections come first, then by how long they are due.
    """
    running = sum(1 for s in states if is_leased(s, now))
    free = max(0, max_concurrent - running)
    candidates = [s for s in states if claimable(s, now)]

    def urgency(s: SectionState) -> tuple[int, datetime, str]:
        due_at = next_due(s.last_success_at, s.interval, s.requested_at)
        return (0 if due_at is None else 1, due_at or datetime.min.replace(tzinfo=now.tzinfo), s.name)

    return [s.name for s in sorted(candidates, key=urgency)[:free]]


def may_start(states: list[SectionState], name: str, now: datetime, max_concurrent: int) -> bool:
    """A refresh whose message was delayed may start when the others leave it a slot."""
    running = sum(1 for s in states if s.name != name and is_leased(s, now))
    return running < max_concurrent


def degraded_after(interval: timedelta, floor: timedelta, factor: float) -> timedelta:
    """A section is degraded past max(floor, factor x interval): 30 min, or 3 intervals."""
    return max(floor, interval * factor)


def section_health(
    *,
    enabled: bool,
    last_success_at: datetime | None,
    interval: timedelta,
    now: datetime,
    breaker_open: bool,
    floor: timedelta,
    factor: float,
) -> Health:
    """healthy / degraded / unhealthy, or disabled: a section switched off is not expected to be
    fresh, and counts for nothing in its pipeline's health."""
    if not enabled:
        return DISABLED
    if last_success_at is None or breaker_open:
        return UNHEALTHY
    if now - last_success_at > degraded_after(interval, floor, factor):
        return DEGRADED
    return HEALTHY
