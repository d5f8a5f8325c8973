"""Catalog: keep every section fresh on its own interval, within the sources' rate
limits and breakers, at most ``max_concurrent`` refreshes at once.

Replaces the brand/category sync (every 30 min, the provider's endpoint allowing
2 requests an hour) and the multi-source catalog refresher. Discover claims the
sections whose interval has passed (a lease each, counted against
``max_concurrent`` in the same transaction) and sends one message per section,
naming the claim's token. The refresh fetches the section, writes only what
changed, records the outcome and publishes CatalogSectionRefreshed. A message
whose token no longer owns the section is stale and does nothing, so a retried
message and a later claim never refresh twice. A failing attempt gives its slot
back at once, so a section waiting on a rate limit, a breaker or a backoff never
holds another one back; its data stays as last written.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlalchemy import select
from sqlalchemy.orm import Session

from actors.catalog import runs
from actors.catalog.claims import (
    SECTION_BUSY,
    SECTION_PUBLISH,
    SECTION_STALE,
    claim_due_sections,
    lock_sections,
    start_section_refresh,
)
from actors.catalog.health import section_rows
from actors.catalog.models import CatalogSection
from actors.catalog.sections import SECTIONS, section_spec
from actors.catalog.settings import CatalogSettings
from actors.catalog.sources import fetch_section
from actors.catalog.store import Counts, apply_section
from backlane import (
    Context,
    DelayedRetry,
    HealthRow,
    MalformedMessage,
    NotReady,
    Pipeline,
    Purpose,
    TransientError,
    register,
)
from backlane.core.clock import as_utc
from backlane.errors import classify
from backlane.messaging.events import EventTopology, publish_event
from contracts.catalog import CatalogSectionRefreshed

#: What the catalog pipeline's functions get: ``ctx.config`` is its CatalogSettings.
CatalogContext = Context[CatalogSettings]


def plans(config: CatalogSettings) -> dict[str, tuple[bool, timedelta]]:
    """(enabled, interval) of every section."""
    return {
        name: (config.sections[name].enabled, timedelta(minutes=config.sections[name].interval_minutes))
        for name in SECTIONS
    }


def fetch(ctx: CatalogContext, limit: int) -> list[dict[str, str]]:
    config = ctx.config
    # A paused section is not claimed; it stays due, and is claimed again once resumed.
    running = {name: (enabled and ctx.paused(name) is None, every) for name, (enabled, every) in plans(config).items()}
    with ctx.db.transaction() as session:
        return claim_due_sections(
            session,
            plans=running,
            now=ctx.clock.now(),
            max_concurrent=min(config.max_concurrent, limit),
            lease=timedelta(seconds=config.lease_seconds),
        )


def _parse(item: Any) -> tuple[str, str]:
    if not isinstance(item, dict) or not isinstance(item.get("token"), str):
        raise MalformedMessage(f'a catalog item is {{"section": NAME, "token": TOKEN}}, got {item!r}')
    return section_spec(item.get("section")).name, item["token"]


def process(ctx: CatalogContext, item: Any) -> None:
    name, token = _parse(item)
    config = ctx.config
    # Paused after it was claimed: the refresh waits (its slot is held at most until its lease
    # ends; discover claims no paused section) and runs once the section is resumed.
    ctx.hold_while_paused(name)
    with ctx.db.transaction() as session:
        verdict = start_section_refresh(
            session,
            name=name,
            token=token,
            plans=plans(config),
            now=ctx.clock.now(),
            max_concurrent=config.max_concurrent,
            lease=timedelta(seconds=config.lease_seconds),
            busy_hold=timedelta(seconds=config.busy_recheck_seconds),
        )
    if verdict == SECTION_STALE:
        ctx.log.info("catalog %s: this message no longer owns the section; nothing to do", name)
        return
    if verdict == SECTION_BUSY:
        raise NotReady(f"{config.max_concurrent} catalog refreshes already running", config.busy_recheck_seconds)
    if verdict != SECTION_PUBLISH:
        _refresh(ctx, name, token)
    _publish_and_release(ctx, name, token)


def _refresh(ctx: CatalogContext, name: str, token: str) -> None:
    config = ctx.config
    spec = SECTIONS[name]
    started = time.monotonic()
    started_at = ctx.clock.now()
    retention = config.sections[name].retention_days
    try:
        items = fetch_section(ctx.db, ctx.clock, config, spec)
        with ctx.db.transaction() as session:
            row = _own(ctx, session, name, token)
            now = ctx.clock.now()
            counts = apply_section(
                session, spec, items, now=now, retention=timedelta(days=retention) if retention else None
            )
            runs.record(session, spec, started_at, now, "succeeded", rows_read=len(items), counts=counts)
            runs.prune(session, name, now - timedelta(days=ctx.settings.controls.audit_keep_days))
            row.last_success_at = row.updated_at = now
            row.last_duration_ms = round((time.monotonic() - started) * 1000, 1)
            row.last_outcome, row.last_error, row.last_counts = "succeeded", None, counts.as_dict()
            row.consecutive_failures, row.event_pending = 0, True
            if row.requested_at is not None and row.claimed_at is not None and row.requested_at <= row.claimed_at:
                row.requested_at = None
    except (Exception, TimeLimitExceeded) as exc:
        _record_attempt(ctx, name, token, exc, time.monotonic() - started, started_at)
        raise
    ctx.log.info("catalog %s refreshed: %s", name, counts.as_dict())


def _own(ctx: CatalogContext, session: Any, name: str, token: str) -> CatalogSection:
    rows = lock_sections(session, plans(ctx.config), ctx.clock.now())
    row = next(r for r in rows if r.name == name)
    if row.lease_token != token:
        raise TransientError(f"catalog {name}: lost its claim while refreshing (lease ran out?)")
    return row


def _claimed_row(session: Session, name: str, token: str) -> CatalogSection | None:
    """Section ``name``'s row, locked, while the claim ``token`` still owns it; else None."""
    row = session.scalars(select(CatalogSection).where(CatalogSection.name == name).with_for_update()).first()
    return row if row is not None and row.lease_token == token else None


def _record_attempt(
    ctx: CatalogContext, name: str, token: str, exc: BaseException, elapsed: float, started_at: datetime
) -> None:
    """Give the slot back and say why; discover leaves the section to its retry until ``hold_until``."""
    error = TransientError("time limit exceeded") if isinstance(exc, TimeLimitExceeded) else classify(exc)
    if isinstance(error, DelayedRetry):
        hold, outcome = error.delay_seconds, "waiting"
    else:
        hold = (ctx.config.max_backoff_ms or ctx.settings.retries.max_backoff_ms) / 1000
        outcome = "retrying"
    now = ctx.clock.now()
    with ctx.db.transaction() as session:
        row = _claimed_row(session, name, token)
        if row is None:
            return
        row.lease_until, row.hold_until = None, now + timedelta(seconds=hold)
        row.last_outcome, row.last_error = outcome, f"[{error.kind}] {error.reason}"[:2000]
        row.last_duration_ms, row.updated_at = round(elapsed * 1000, 1), now
        runs.record(session, SECTIONS[name], started_at, now, outcome, reason=row.last_error)
        if not isinstance(error, DelayedRetry):
            row.consecutive_failures += 1


def _publish_and_release(ctx: CatalogContext, name: str, token: str) -> None:
    with ctx.db.transaction() as session:
        row = session.get(CatalogSection, name)
        assert row is not None and row.last_success_at is not None
        counts = Counts(**(row.last_counts or {}))
        event = CatalogSectionRefreshed(
            version=1,
            section=name,
            source=SECTIONS[name].source,
            refreshed_at=as_utc(row.last_success_at),
            changed=counts.changed,
            duration_ms=row.last_duration_ms or 0.0,
            **counts.as_dict(),
        )
    publish_event(ctx.runtime.broker, event_topology(ctx.config), event, routing_key=name)
    with ctx.db.transaction() as session:
        row = _claimed_row(session, name, token)
        if row is not None:
            row.lease_until = row.lease_token = row.hold_until = None
            row.event_pending, row.updated_at = False, ctx.clock.now()


def on_failure(ctx: CatalogContext, item: Any, reason: str) -> None:
    """Retries spent or a permanent error: free the section until its next interval."""
    try:
        name, token = _parse(item)
    except MalformedMessage:
        return
    now = ctx.clock.now()
    with ctx.db.transaction() as session:
        row = _claimed_row(session, name, token)
        if row is None:
            return
        row.lease_until = row.lease_token = None
        row.hold_until = now + timedelta(minutes=ctx.config.sections[name].interval_minutes)
        row.last_outcome, row.last_error, row.updated_at = "failed", reason[:2000], now
        runs.settle_last(session, name, reason)


def health(ctx: CatalogContext) -> list[HealthRow]:
    return section_rows(ctx.db, ctx.clock, ctx.config)


def stats(ctx: CatalogContext) -> dict[str, int]:
    rows = [row.details for row in health(ctx)]
    return {
        "due": sum(1 for r in rows if r["due"] and not r["running"]),
        "in_flight": sum(1 for r in rows if r["running"]),
        "done": sum(1 for r in rows if r["last_outcome"] == "succeeded"),
        "failed": sum(1 for r in rows if r["last_outcome"] == "failed"),
    }


def trigger_section(ctx: CatalogContext, name: str) -> list[dict[str, str]]:
    """Mark one section requested (due whatever its interval) and claim it now if a slot is free;
    otherwise discover takes it at its next tick. Returns the claimed item, if any."""
    if name not in SECTIONS:
        raise KeyError(f"no catalog section named {name!r} (known: {', '.join(SECTIONS)})")
    config = ctx.config
    now = ctx.clock.now()
    requested = plans(config)
    requested[name] = (True, requested[name][1])  # an operator's request refreshes a disabled section too
    held = trigger_when(ctx, name) is not None  # a claim now would only wait: leave it to discover
    with ctx.db.transaction() as session:
        rows = lock_sections(session, requested, now)
        row = next(r for r in rows if r.name == name)
        row.requested_at = row.updated_at = now
        session.flush()
        if held:
            return []
        return claim_due_sections(
            session,
            plans=requested,
            now=now,
            max_concurrent=config.max_concurrent,
            lease=timedelta(seconds=config.lease_seconds),
            only=name,
        )


def trigger_when(ctx: CatalogContext, name: str) -> str | None:
    """When a requested section will really refresh, if something holds it (rate limit, breaker, retry)."""
    row = next((r.details for r in health(ctx) if r.name == name), None)
    if row is None or row["held_until"] is None:
        return None
    until = datetime.fromisoformat(row["held_until"])
    wait = max(0.0, (until - ctx.clock.now()).total_seconds())
    return f"held by {row['held_by']} until {until:%Y-%m-%d %H:%M:%S} UTC (in {wait / 60:.0f} min); it refreshes then"


def event_topology(config: CatalogSettings) -> EventTopology:
    """catalog.events and its bounded recent queue (declared by `backlane declare-queues` too)."""
    return EventTopology(
        config.event_exchange,
        config.event_recent_queue,
        config.event_recent_max_length,
        masstransit_namespace=config.event_masstransit_namespace,
        event_types=(CatalogSectionRefreshed.__name__,),
    )


CATALOG = register(
    Pipeline(
        name="catalog",
        purpose=Purpose.INGESTION,
        config=CatalogSettings,
        fetch=fetch,
        process=process,
        on_failure=on_failure,
        stats=stats,
        health=health,
        description="refresh each catalog section from its source on its own interval",
        trigger=trigger_section,
        trigger_when=trigger_when,
        parts=lambda _ctx: list(SECTIONS),
        history=lambda ctx, section, limit: runs.history(ctx.db, section, limit),
        actor_options=lambda config: {"time_limit": int(config.refresh_time_limit_seconds * 1000)},
        events=lambda config: [event_topology(config)],
    )
)
