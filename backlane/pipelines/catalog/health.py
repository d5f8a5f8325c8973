"""Per-section rows for ``backlane status`` and the worker's /health: freshness, next due,
last error and the source's breaker, with a health verdict from the pure
:func:`backlane.pipelines.catalog.schedule.section_health`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from backlane.core.clock import as_utc
from backlane.db.models import CatalogSection, CircuitBreakerRow
from backlane.pipelines.catalog.schedule import next_due, section_health
from backlane.pipelines.catalog.sections import SECTIONS
from backlane.resilience.breaker import CLOSED, breaker_row_state

if TYPE_CHECKING:
    from backlane.core.clock import Clock
    from backlane.db.engine import Database
    from backlane.pipelines.catalog.settings import CatalogSettings


def _utc(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def section_rows(db: Database, clock: Clock, config: CatalogSettings) -> list[dict[str, Any]]:
    """One row per section: name, health, enabled, interval, last success, age, next due,
    last outcome and error, breaker state, whether a refresh is running."""
    now = clock.now()
    with db.transaction() as session:
        stored = {row.name: row for row in session.scalars(select(CatalogSection))}
        breakers = {row.name: breaker_row_state(row, now) for row in session.scalars(select(CircuitBreakerRow))}
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
        rows.append(
            {
                "name": name,
                "health": section_health(
                    enabled=plan.enabled,
                    last_success_at=last_success,
                    interval=interval,
                    now=now,
                    breaker_open=breaker["state"] != CLOSED,
                    floor=timedelta(minutes=config.degraded_after_minutes),
                    factor=config.degraded_interval_factor,
                ),
                "enabled": plan.enabled,
                "source": spec.source,
                "interval_min": plan.interval_minutes,
                "last_success": last_success.isoformat() if last_success else None,
                "age_s": round((now - last_success).total_seconds()) if last_success else None,
                "next_due": (due or now).isoformat() if plan.enabled else None,
                "due": plan.enabled and (due is None or due <= now),
                "running": lease is not None and lease > now,
                "last_outcome": row.last_outcome if row else None,
                "last_error": row.last_error if row else None,
                "counts": row.last_counts if row else None,
                "breaker": breaker["state"],
            }
        )
    return rows
