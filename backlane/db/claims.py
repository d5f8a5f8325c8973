"""Every claim query discover runs, in one place, beside the indexes they rely on.

A claim takes due rows whose lease has ended, sets a new lease and returns their
ids, in one transaction: on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` so two
clocks or workers claiming at once get disjoint rows without waiting on each
other; on SQLite the transaction already holds the database's write lock
(``BEGIN IMMEDIATE``, see :mod:`backlane.db.engine`). A row whose message is
lost comes back when its lease ends.

Cost is O(batch): the due condition matches a partial index (``ix_orders_due``
for orders) so the scan touches the due rows only, whatever the table size.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, text, update
from sqlalchemy.orm import Session

from backlane.db.models import Export, Order, StagingBatch, StagingStatus, Track


def lease_is_free(model: Any, now: datetime) -> ColumnElement[bool]:
    return or_(model.lease_until.is_(None), model.lease_until <= now)


def claim(
    session: Session,
    model: Any,
    *,
    due: ColumnElement[bool],
    order_by: Sequence[Any],
    limit: int,
    now: datetime,
    lease: timedelta,
) -> list[Any]:
    """Lease up to ``limit`` due rows of ``model`` and return their ids, in ``order_by`` order."""
    if limit <= 0:
        return []
    query = select(model.id).where(due, lease_is_free(model, now)).order_by(*order_by).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    if ids:
        session.execute(update(model).where(model.id.in_(ids)).values(lease_until=now + lease))
    return ids


#: Must match the predicate of ix_orders_due word for word, so the planner uses it.
ORDERS_DUE = text("orders.status IN ('pending', 'placed')")


def claim_due_orders(
    session: Session, *, now: datetime, limit: int, lease: timedelta, recent_window: timedelta
) -> list[int]:
    """Orders with work left: those of the recent window first (oldest first), then older ones."""
    window_start = now - recent_window
    recent = claim(
        session,
        Order,
        due=and_(ORDERS_DUE, Order.created_at >= window_start),
        order_by=[Order.created_at, Order.id],
        limit=limit,
        now=now,
        lease=lease,
    )
    older = claim(
        session,
        Order,
        due=and_(ORDERS_DUE, Order.created_at < window_start),
        order_by=[Order.created_at, Order.id],
        limit=limit - len(recent),
        now=now,
        lease=lease,
    )
    return recent + older


def status_counts(
    session: Session,
    model: Any,
    *,
    due: ColumnElement[bool],
    done: ColumnElement[bool],
    failed: ColumnElement[bool],
    now: datetime,
) -> dict[str, int]:
    """How many rows are due (waiting for a tick), in flight (leased), done and failed."""
    from sqlalchemy import func, not_

    def count(condition: ColumnElement[bool]) -> int:
        return int(session.scalar(select(func.count()).select_from(model).where(condition)) or 0)

    return {
        "due": count(and_(due, lease_is_free(model, now))),
        "in_flight": count(and_(due, not_(lease_is_free(model, now)))),
        "done": count(done),
        "failed": count(failed),
    }


def claim_one(
    session: Session, model: Any, item_id: Any, *, due: ColumnElement[bool], now: datetime, lease: timedelta
) -> bool:
    """Lease one row if it is due and free; False when it is settled or already in flight."""
    result = session.execute(
        update(model).where(model.id == item_id, due, lease_is_free(model, now)).values(lease_until=now + lease)
    )
    return bool(result.rowcount)


#: Must match the predicate of ix_tracks_due word for word.
TRACKS_DUE = text("tracks.status = 'deleted'")


def claim_due_tracks(session: Session, *, now: datetime, limit: int, lease: timedelta) -> list[int]:
    """Deleted tracks whose scheduled deletion time has come, longest overdue first."""
    return claim(
        session,
        Track,
        due=and_(TRACKS_DUE, Track.delete_after <= now),
        order_by=[Track.delete_after, Track.id],
        limit=limit,
        now=now,
        lease=lease,
    )


def schedule_new_exports(session: Session, *, now: datetime, initial_delay: timedelta) -> int:
    """Give exports never seen before their first run time: now + the initial delay."""
    result = session.execute(update(Export).where(Export.next_run_at.is_(None)).values(next_run_at=now + initial_delay))
    return int(result.rowcount or 0)


def exports_due(session: Session, *, now: datetime) -> bool:
    """Whether any export is due and free (a cheap look before asking the product API's health)."""
    query = select(Export.id).where(Export.next_run_at <= now, lease_is_free(Export, now)).limit(1)
    return session.scalar(query) is not None


def claim_due_exports(session: Session, *, now: datetime, limit: int, lease: timedelta) -> list[int]:
    """Exports whose next run time has come (ix_exports_due), longest overdue first."""
    return claim(
        session,
        Export,
        due=Export.next_run_at <= now,
        order_by=[Export.next_run_at, Export.id],
        limit=limit,
        now=now,
        lease=lease,
    )


#: Must match the predicate of ix_staging_batches_due word for word.
STAGING_DUE = text("staging_batches.status IN ('pending', 'processing')")


def claim_staging_batches(
    session: Session, *, processor: str, now: datetime, limit: int, lease: timedelta
) -> list[int]:
    """Open batches of one processor, oldest first, marked processing. Each processor reads
    its own slice of ix_staging_batches_due, so a vendor with thousands waiting costs
    another vendor's claim nothing."""
    ids = claim(
        session,
        StagingBatch,
        due=and_(STAGING_DUE, StagingBatch.processor == processor),
        order_by=[StagingBatch.created_at, StagingBatch.id],
        limit=limit,
        now=now,
        lease=lease,
    )
    if ids:
        session.execute(
            update(StagingBatch)
            .where(StagingBatch.id.in_(ids))
            .values(status=StagingStatus.PROCESSING.value, updated_at=now)
        )
    return ids
