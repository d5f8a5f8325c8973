"""The audit trail: every operator action, who did it and how it ended, kept for a set time.

Each action of the CLI and the dashboard (pause, resume, a setting set or reverted, cancel,
reopen, trigger, requeue, purge, a bulk job started or stopped) is written here by the code
that does it, with the answer the operator got, so "who paused orders at 3 a.m., and why" is
one query, not a search through every process's logs. An action whose record cannot be
written (the database away) is not refused for it: the record is best effort, the action's
own log line says what happened.
"""

from __future__ import annotations

import getpass
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select

from backlane.db.engine import Database
from backlane.db.models import AuditEvent
from backlane.db.schema import sqlite_path
from backlane.errors import Problem

logger = logging.getLogger("backlane.audit")

#: Longest text kept per field: a detail is what was asked, not a dump.
MAX_TEXT = 2000


def clean_text(text: str) -> str:
    """Text any database takes: no NUL (PostgreSQL refuses it), no lone surrogate (what Python
    makes of a command line or a user name that is not UTF-8, which no driver encodes)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def cli_actor() -> str:
    """Who runs a command: ``cli:<OS user>`` (the uid when the system names none)."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry and no LOGNAME/USER (a bare container)
        user = f"uid {os.getuid()}"
    return clean_text(f"cli:{user}")


def dashboard_actor(user: str) -> str:
    return clean_text(f"dashboard:{user}")


def record(
    db: Database,
    now: datetime,
    actor: str,
    action: str,
    target: str,
    *,
    detail: str = "",
    outcome: str = "ok",
    result: str = "",
    keep_days: float | None = None,
) -> None:
    """Write one action; with ``keep_days``, also drop what is older than that (one indexed delete)."""
    actor, action, target, detail, result = (clean_text(v) for v in (actor, action, target, detail, result))
    path = sqlite_path(db.url)
    if path is not None and not path.exists():
        return  # nothing to write into, and no empty database file to leave behind
    try:
        with db.transaction() as session:
            session.add(
                AuditEvent(
                    at=now,
                    actor=actor[:200],
                    action=action[:50],
                    target=target[:300],
                    detail=detail[:MAX_TEXT],
                    outcome=outcome[:20],
                    result=result[:MAX_TEXT],
                )
            )
            if keep_days is not None:
                session.execute(delete(AuditEvent).where(AuditEvent.at < now - timedelta(days=keep_days)))
    except Exception as exc:
        said = str(getattr(exc, "orig", None) or exc)  # the driver's words, not SQLAlchemy's notes
        cause = said.splitlines()[0][:200] if said else type(exc).__name__
        # A database without the schema: the command's own line already says `backlane migrate`.
        unmigrated = "no such table" in cause or "does not exist" in cause
        level = logging.DEBUG if unmigrated else logging.WARNING
        logger.log(level, "%s %s by %s not recorded in the audit trail: %s", action, target, actor, cause)


@contextmanager
def recorded(
    db: Database,
    now: datetime,
    actor: str,
    action: str,
    target: str,
    *,
    detail: str = "",
    keep_days: float | None = None,
) -> Iterator[list[str]]:
    """Record the action done inside: ``ok`` with the line put in the yielded list, else the
    error's line with ``refused`` (a :class:`~backlane.errors.Problem`) or ``failed``."""
    answer: list[str] = []
    try:
        yield answer
    except Problem as problem:
        record(
            db, now, actor, action, target, detail=detail, outcome="refused", result=problem.line, keep_days=keep_days
        )
        raise
    except Exception as exc:
        record(db, now, actor, action, target, detail=detail, outcome="failed", result=str(exc), keep_days=keep_days)
        raise
    record(db, now, actor, action, target, detail=detail, result=" ".join(answer), keep_days=keep_days)


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    total: int


def events(
    db: Database, *, limit: int = 50, page: int = 0, search: str = "", since: datetime | None = None
) -> AuditPage:
    """The newest actions first, one bounded page; ``search`` matches actor, action or target."""
    where: list[Any] = []
    if search:
        pattern = f"%{search[:200]}%"
        where.append(
            or_(AuditEvent.actor.like(pattern), AuditEvent.action.like(pattern), AuditEvent.target.like(pattern))
        )
    if since is not None:
        where.append(AuditEvent.at >= since)
    with db.transaction() as session:
        total = session.scalar(select(func.count()).select_from(AuditEvent).where(*where)) or 0
        rows = list(
            session.scalars(
                select(AuditEvent)
                .where(*where)
                .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
                .limit(max(1, min(limit, 1000)))
                .offset(max(0, page) * max(1, min(limit, 1000)))
            )
        )
        session.expunge_all()
    return AuditPage(rows, int(total))
