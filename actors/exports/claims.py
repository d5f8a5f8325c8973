"""Giving a newly defined export its first run time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session

from actors.exports.models import Export


def schedule_new_exports(session: Session, *, now: datetime, initial_delay: timedelta) -> int:
    """Give exports never seen before their first run time: now + the initial delay."""
    result = session.execute(update(Export).where(Export.next_run_at.is_(None)).values(next_run_at=now + initial_delay))
    return int(cast(CursorResult[Any], result).rowcount or 0)
