"""Outage memory: "service X is down" is logged once per outage, whichever process sees it.

A pipeline that checks an outside service's health before working (the product
export) would otherwise log the same outage on every tick, from every clock and
worker. The state lives in the database (``service_outages``): the call that
turns a service from up to down is the one that gets ``True`` and logs, and the
call that turns it back up learns since when it was down. Both transitions are
made under the row's lock (:func:`backlane.db.rows.locked_row`), so two processes
racing never both win.
"""

from __future__ import annotations

from datetime import datetime

from actors.exports.models import ServiceOutage
from backlane.core.clock import as_utc
from backlane.db.engine import Database
from backlane.db.rows import locked_row, peek_row


def mark_down(db: Database, service: str, now: datetime, reason: str) -> bool:
    """Record that ``service`` is down; True only for the call that started this outage."""
    with db.transaction() as session:
        row = locked_row(session, ServiceOutage, {"service": service}, {})
        started = row.down_since is None
        if started:
            row.down_since, row.reason = now, reason
        row.checked_at = now
        return started


def mark_up(db: Database, service: str, now: datetime) -> datetime | None:
    """Record that ``service`` is up; returns when the outage began, only for the call that ended it."""
    with db.transaction() as session:
        row = peek_row(session, ServiceOutage, {"service": service})
        if row is None or row.down_since is None:
            return None  # the common case: up and known to be up, no write
        row = locked_row(session, ServiceOutage, {"service": service}, {})
        since = row.down_since
        row.down_since, row.reason, row.checked_at = None, None, now
        return as_utc(since) if since is not None else None
