"""Claiming catalog sections: the section rows are locked together, so the free slots
(``max_concurrent``) are decided in one transaction across every worker and clock.

"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from actors.catalog.models import CatalogSection
from actors.catalog.schedule import SectionState, may_start, plan_claims
from backlane.core.clock import as_utc
from backlane.db.rows import insert_missing

# Twelve rows, so claiming locks them all (in name order, so two claimers never
# deadlock): the count of unexpired leases and the new leases are then decided in
# one transaction, and max_concurrent holds across every worker and clock.

#: What a refresh message does when it arrives (see start_section_refresh).
SECTION_GO, SECTION_STALE, SECTION_BUSY, SECTION_PUBLISH = "go", "stale", "busy", "publish"


def lock_sections(session: Session, plans: dict[str, tuple[bool, timedelta]], now: datetime) -> list[Any]:
    """Every section row (created when missing), locked for this transaction, by name."""
    insert_missing(session, CatalogSection, [{"name": name, "updated_at": now} for name in plans])
    query = select(CatalogSection).order_by(CatalogSection.name).with_for_update()
    return list(session.scalars(query.execution_options(populate_existing=True)))


def _section_states(rows: list[Any], plans: dict[str, tuple[bool, timedelta]]) -> list[Any]:
    def utc(value: datetime | None) -> datetime | None:
        return as_utc(value) if value is not None else None

    return [
        SectionState(
            name=row.name,
            enabled=plans[row.name][0],
            interval=plans[row.name][1],
            last_success_at=utc(row.last_success_at),
            requested_at=utc(row.requested_at),
            lease_until=utc(row.lease_until),
            hold_until=utc(row.hold_until),
        )
        for row in rows
        if row.name in plans
    ]


def claim_due_sections(
    session: Session,
    *,
    plans: dict[str, tuple[bool, timedelta]],
    now: datetime,
    max_concurrent: int,
    lease: timedelta,
    only: str | None = None,
) -> list[dict[str, str]]:
    """Lease the most overdue due sections within the free slots; one item per section.

    ``plans`` maps each section to (enabled, interval). With ``only``, claim that
    section alone if it is claimable (`backlane trigger catalog SECTION`).
    """
    rows = lock_sections(session, plans, now)
    states = _section_states(rows, plans)
    if only is not None:
        states = [s for s in states if s.name == only or s.lease_until is not None]
    chosen = set(plan_claims(states, now, max_concurrent))
    if only is not None:
        chosen &= {only}
    items = []
    for row in rows:
        if row.name in chosen:
            row.lease_until, row.lease_token = now + lease, str(uuid.uuid4())
            row.claimed_at, row.hold_until, row.updated_at = now, None, now
            items.append({"section": row.name, "token": row.lease_token})
    return items


def start_section_refresh(
    session: Session,
    *,
    name: str,
    token: str,
    plans: dict[str, tuple[bool, timedelta]],
    now: datetime,
    max_concurrent: int,
    lease: timedelta,
    busy_hold: timedelta,
) -> str:
    """Decide what a refresh message does: go (lease taken), stale (another message or a
    finished refresh owns the section), busy (no free slot: retry later) or publish
    (the refresh is written, only its event is left)."""
    rows = lock_sections(session, plans, now)
    row = next((r for r in rows if r.name == name), None)
    if row is None or row.lease_token != token:
        return SECTION_STALE
    if row.event_pending:
        return SECTION_PUBLISH
    if not may_start(_section_states(rows, plans), name, now, max_concurrent):
        row.lease_until, row.hold_until, row.updated_at = None, now + busy_hold, now
        return SECTION_BUSY
    row.lease_until, row.hold_until = now + lease, None
    row.last_attempt_at = row.updated_at = now
    return SECTION_GO
