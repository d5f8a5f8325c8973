"""Outage memory: "service X is down" is logged once per outage, whichever process sees it.

A pipeline that checks an outside service's health before working (the product
export) would otherwise log the same outage on every tick, from every clock and
worker. The state lives in the database (``service_outages``): the call that
turns a service from up to down is the one that gets ``True`` and logs, and the
call that turns it back up learns since when it was down. Both transitions are
single conditional UPDATEs, so two processes racing never both win.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from backlane.clock import as_utc
from backlane.db.engine import Database
from backlane.db.models import ServiceOutage


def _ensure_row(session: Session, service: str) -> None:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(ServiceOutage).values(service=service).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(ServiceOutage).values(service=service).on_conflict_do_nothing())
    elif session.get(ServiceOutage, service) is None:
        session.execute(insert(ServiceOutage).values(service=service))


def mark_down(db: Database, service: str, now: datetime, reason: str) -> bool:
    """Record that ``service`` is down; True only for the call that started this outage."""
    with db.transaction() as session:
        _ensure_row(session, service)
        started = session.execute(
            update(ServiceOutage)
            .where(ServiceOutage.service == service, ServiceOutage.down_since.is_(None))
            .values(down_since=now, reason=reason, checked_at=now)
        ).rowcount
        if not started:
            session.execute(update(ServiceOutage).where(ServiceOutage.service == service).values(checked_at=now))
        return bool(started)


def mark_up(db: Database, service: str, now: datetime) -> datetime | None:
    """Record that ``service`` is up; returns when the outage began, only for the call that ended it."""
    with db.transaction() as session:
        since = session.scalar(select(ServiceOutage.down_since).where(ServiceOutage.service == service))
        if since is None:
            return None
        ended = session.execute(
            update(ServiceOutage)
            .where(ServiceOutage.service == service, ServiceOutage.down_since.is_not(None))
            .values(down_since=None, reason=None, checked_at=now)
        ).rowcount
        return as_utc(since) if ended else None
