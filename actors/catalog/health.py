"""Per-section rows for ``backlane status`` and the worker's /health: freshness, next due,
last error and the source's breaker, with a health verdict from the pure
:func:`actors.catalog.schedule.section_health`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from actors.catalog.models import CatalogSection
from actors.catalog.schedule import next_due, section_health
from actors.catalog.sections import SECTIONS, SectionSpec
from backlane import HealthRow
from backlane.core.clock import as_utc
from backlane.core.health import ago, remaining
from backlane.db.models import CircuitBreakerRow, RateLimitRow
from backlane.resilience.breaker import CLOSED, breaker_row_state
from backlane.resilience.rate_limit import take_slot

if TYPE_CHECKING:
    from actors.catalog.settings import CatalogSettings
    from backlane.core.clock import Clock
    from backlane.db.engine import Database


def _utc(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def limiter_state(
    config: CatalogSettings, spec: SectionSpec, row: RateLimitRow | None, now: datetime
) -> dict[str, Any]:
    """The section's endpoint limiter as status shows it: name, calls left in the window, and the
    time a call is next allowed when none is (the server's wait or our own budget)."""
    limiter = config.limiters.get(spec.limiter_name)
    held = _utc(row.held_until) if row is not None else None
    until = held if held is not None and held > now else None
    left: int | None = None
    if limiter is not None and limiter.calls is not None:
        slot = take_slot(list(row.calls or []) if row else [], now.timestamp(), limiter.calls, limiter.window_seconds)
        left = max(0, limiter.calls - len(slot.calls) + (1 if slot.allowed else 0))
        if not slot.allowed:
            budget_until = now + timedelta(seconds=slot.wait)
            until = max(until, budget_until) if until is not None else budget_until
    return {"name": spec.limiter_name, "calls_left": left, "held_until": until}


def _hold(
    row: CatalogSection | None, limiter: dict[str, Any], breaker: dict[str, Any], now: datetime
) -> tuple[datetime | None, str | None]:
    """When the section can really refresh again if something holds it now, and what holds it."""
    holds: list[tuple[datetime, str]] = []
    if limiter["held_until"] is not None:
        holds.append((limiter["held_until"], f"rate limit {limiter['name']}"))
    open_until = breaker.get("open_until")
    if breaker.get("state") not in (None, CLOSED) and open_until is not None and as_utc(open_until) > now:
        holds.append((as_utc(open_until), f"breaker {breaker.get('name', 'open')}"))
    section_hold = _utc(row.hold_until) if row is not None else None
    if section_hold is not None and section_hold > now:
        holds.append((section_hold, f"{row.last_outcome or 'waiting'} (retry)" if row is not None else "retry"))
    if not holds:
        return None, None
    return max(holds, key=lambda hold: hold[0])


def section_rows(db: Database, clock: Clock, config: CatalogSettings) -> list[HealthRow]:
    """One row per section: name, health, enabled, interval, last success, age, next due (the end
    of a hold when one is later), held until and by what (rate limit, breaker, retry), its
    endpoint limiter's calls left, last outcome and error, breaker state, whether it is running."""
    now = clock.now()
    with db.transaction() as session:
        stored = {row.name: row for row in session.scalars(select(CatalogSection))}
        breakers = {row.name: breaker_row_state(row, now) for row in session.scalars(select(CircuitBreakerRow))}
        limits = {row.key: row for row in session.scalars(select(RateLimitRow))}
    rows = []
    for name, spec in SECTIONS.items():
        plan = config.sections[name]
        interval = timedelta(minutes=plan.interval_minutes)
        row = stored.get(name)
        last_success = _utc(row.last_success_at) if row else None
        requested = _utc(row.requested_at) if row else None
        lease = _utc(row.lease_until) if row else None
        breaker = breakers.get(spec.breaker_name, {"state": "closed"})
        due = next_due(last_success, interval, requested)
        limiter = limiter_state(config, spec, limits.get(spec.rate_key), now)
        held_until, held_by = _hold(row, limiter, breaker, now)
        is_due = plan.enabled and (due is None or due <= now)
        if held_until is not None and (due is None or held_until > due):
            due = held_until
        health = section_health(
            enabled=plan.enabled,
            last_success_at=last_success,
            interval=interval,
            now=now,
            breaker_open=breaker["state"] != CLOSED,
            floor=timedelta(minutes=config.degraded_after_minutes),
            factor=config.degraded_interval_factor,
        )
        details = {
            "enabled": plan.enabled,
            "source": spec.source,
            "interval_min": plan.interval_minutes,
            "last_success": last_success.isoformat() if last_success else None,
            "age_s": round((now - last_success).total_seconds()) if last_success else None,
            "next_due": (due or now).isoformat() if plan.enabled else None,
            "due": is_due and held_until is None,
            "held_until": held_until.isoformat() if held_until else None,
            "held_by": held_by,
            "limiter": limiter["name"],
            "limiter_calls_left": limiter["calls_left"],
            "running": lease is not None and lease > now,
            "last_outcome": row.last_outcome if row else None,
            "last_error": row.last_error if row else None,
            "counts": row.last_counts if row else None,
            "breaker": breaker["state"],
        }
        rows.append(
            HealthRow(
                name,
                health,
                summary=_summary(details, now),
                columns=_columns(details),
                details=details,
                trigger_target=name,
            )
        )
    return rows


def _summary(row: dict[str, Any], now: datetime) -> str:
    """The section's line in ``backlane status``: its interval and freshness, then what holds it."""
    text = f"every {row['interval_min']:g}m, last ok {ago(row['age_s'])}"
    if row["running"]:
        text += ", refreshing"
    if row["breaker"] not in (None, CLOSED):
        text += f", breaker {row['breaker']}"
    if row["held_until"]:
        text += f", held by {row['held_by'] or 'a hold'} {remaining(datetime.fromisoformat(row['held_until']), now)}"
    if row["last_outcome"] not in (None, "succeeded") and row["last_error"]:
        text += f", {row['last_outcome']}: {row['last_error']}"
    return text


def _columns(row: dict[str, Any]) -> dict[str, str]:
    """The section's cells on the dashboard."""
    counts = row["counts"] or {}
    return {
        "interval": f"{row['interval_min']:g} min",
        "last success": ago(row["age_s"]),
        "next due": (row["next_due"] or "") + (" (refreshing)" if row["running"] else ""),
        "held": f"{row['held_by'] or 'held'} until {row['held_until']}" if row["held_until"] else "",
        "last outcome": (row["last_outcome"] or "") + (f": {row['last_error']}" if row["last_error"] else ""),
        "last counts": ", ".join(f"{key} {value}" for key, value in counts.items()),
    }
