"""Every refresh of a section as a run, kept as history: the lineage the refresher promised.

A run is one attempt: when it started and ended, the source it read, how many rows the
source sent and what the refresh wrote (inserted, updated, removed, pruned), how it ended
(succeeded; retrying or waiting, the item goes on; failed, for good) and why. Written in
the same transaction as the section's own bookkeeping, so the history never says a refresh
happened that did not. Kept for ``BACKLANE_CONTROLS__AUDIT_KEEP_DAYS``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from actors.catalog.models import CatalogRun
from actors.catalog.sections import SectionSpec
from actors.catalog.store import Counts
from backlane.db.engine import Database


def record(
    session: Session,
    spec: SectionSpec,
    started_at: datetime,
    finished_at: datetime,
    outcome: str,
    *,
    rows_read: int | None = None,
    counts: Counts | None = None,
    reason: str | None = None,
) -> None:
    written = counts.as_dict() if counts is not None else {}
    session.add(
        CatalogRun(
            section=spec.name,
            source=spec.source,
            started_at=started_at,
            finished_at=finished_at,
            outcome=outcome,
            reason=reason[:2000] if reason else None,
            rows_read=rows_read,
            inserted=written.get("inserted"),
            updated=written.get("updated"),
            removed=written.get("removed"),
            pruned=written.get("pruned"),
        )
    )


def settle_last(session: Session, section: str, reason: str) -> None:
    """The section failed for good: its latest run (the attempt that spent the budget) says so."""
    latest = session.scalar(select(func.max(CatalogRun.id)).where(CatalogRun.section == section))
    run = session.get(CatalogRun, latest) if latest is not None else None
    if run is not None and run.outcome in ("retrying", "waiting"):
        run.outcome, run.reason = "failed", reason[:2000]


def prune(session: Session, section: str, before: datetime) -> None:
    session.execute(delete(CatalogRun).where(CatalogRun.section == section, CatalogRun.started_at < before))


def history(db: Database, section: str, limit: int = 50) -> list[dict[str, Any]]:
    """The section's latest runs, newest first, as plain values."""
    with db.transaction() as session:
        found = session.scalars(
            select(CatalogRun)
            .where(CatalogRun.section == section)
            .order_by(CatalogRun.started_at.desc(), CatalogRun.id.desc())
            .limit(max(1, min(limit, 500)))
        )
        return [
            {
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "source": run.source,
                "outcome": run.outcome,
                "rows_read": run.rows_read,
                "inserted": run.inserted,
                "updated": run.updated,
                "removed": run.removed,
                "pruned": run.pruned,
                "reason": run.reason,
            }
            for run in found
        ]
