"""Every claim query discover runs, in one place; the indexes they rely on are declared
beside each model, with the due predicate they share (e.g. ``ORDERS_DUE``).

A claim takes due rows whose lease has ended, sets a new lease and returns their
ids, in one transaction: on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` so two
clocks or workers claiming at once get disjoint rows without waiting on each
other; on SQLite the transaction already holds the database's write lock
(``BEGIN IMMEDIATE``, see :mod:`backlane.db.engine`). A row whose message is
lost comes back when its lease ends.

Cost is O(batch): the due condition is the predicate of a partial index
(``ix_orders_due`` for orders), so the scan touches the due rows only, whatever
the table size. :class:`backlane.core.table.ItemTable` runs these queries for a
pipeline that declares its table.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, TextClause, and_, func, not_, or_, select, update
from sqlalchemy.orm import Session

#: A WHERE condition: an expression, or literal SQL matching a partial index word for word.
Condition = ColumnElement[bool] | TextClause
#: The column holding a row's lease, unless a table names another.
LEASE_COLUMN = "lease_until"


def lease_is_free(model: Any, now: datetime, lease_column: str = LEASE_COLUMN) -> ColumnElement[bool]:
    column = getattr(model, lease_column)
    return or_(column.is_(None), column <= now)


def claim(
    session: Session,
    model: Any,
    *,
    due: Condition,
    order_by: Sequence[Any],
    limit: int,
    now: datetime,
    lease: timedelta,
    values: Mapping[str, Any] | None = None,
    lease_column: str = LEASE_COLUMN,
) -> list[Any]:
    """Lease up to ``limit`` due rows of ``model`` and return their ids, in ``order_by`` order;
    ``values`` are written with the lease (e.g. a status saying the row is claimed)."""
    if limit <= 0:
        return []
    query = select(model.id).where(due, lease_is_free(model, now, lease_column)).order_by(*order_by).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    if ids:
        # No ORM synchronisation: nothing in this session holds the rows, and "auto" on
        # PostgreSQL adds RETURNING and per-row bookkeeping for every claimed id.
        lease_them = update(model).where(model.id.in_(ids)).values({lease_column: now + lease, **(values or {})})
        session.execute(lease_them.execution_options(synchronize_session=False))
    return ids


def claim_one(
    session: Session,
    model: Any,
    item_id: Any,
    *,
    due: Condition,
    now: datetime,
    lease: timedelta,
    lease_column: str = LEASE_COLUMN,
) -> bool:
    """Lease one row if it is due and free; False when it is settled or already in flight."""
    free = lease_is_free(model, now, lease_column)
    result = session.execute(update(model).where(model.id == item_id, due, free).values({lease_column: now + lease}))
    return bool(cast(CursorResult[Any], result).rowcount)


def next_token(token: datetime | None, now: datetime, lease: timedelta) -> datetime:
    """The lease a fence sets: ``now + lease``, and always later than ``token``, so each take
    of a lease has its own value even when the clock stands still (tests) or steps back."""
    taken = now + lease
    if token is not None:
        if token.tzinfo is None and taken.tzinfo is not None:  # the database gives back naive UTC
            token = token.replace(tzinfo=taken.tzinfo)
        if taken <= token:
            taken = token + timedelta(microseconds=1)
    return taken


def lease_is(model: Any, token: datetime | None, lease_column: str = LEASE_COLUMN) -> ColumnElement[bool]:
    """The row's lease is still ``token`` (None: it has none): no other worker claimed it since."""
    column = getattr(model, lease_column)
    return cast(ColumnElement[bool], column.is_(None) if token is None else column == token)


def fence(
    session: Session,
    model: Any,
    item_id: Any,
    *,
    token: datetime | None,
    due: Condition,
    now: datetime,
    lease: timedelta,
    lease_column: str = LEASE_COLUMN,
) -> datetime | None:
    """Take the lease ``token`` of row ``item_id`` for one more ``lease``, at the last moment before
    an external call: the new token, or None when the row is settled or its lease is no longer
    ``token`` (it ran out and another worker claimed the row: that worker does the call).

    A compare-and-set, so of two workers holding the same token only one gets through; the
    write that follows the call is guarded by the new token (:func:`lease_is`)."""
    taken = next_token(token, now, lease)
    still_mine = update(model).where(model.id == item_id, due, lease_is(model, token, lease_column))
    result = session.execute(still_mine.values({lease_column: taken}))
    return taken if cast(CursorResult[Any], result).rowcount else None


def any_due(session: Session, model: Any, *, due: Condition, now: datetime, lease_column: str = LEASE_COLUMN) -> bool:
    """Whether any row is due and free (a cheap look before an expensive step)."""
    query = select(model.id).where(due, lease_is_free(model, now, lease_column)).limit(1)
    return session.scalar(query) is not None


#: When set (see :func:`bounded_counts`), a count that passes it stops there and PostgreSQL's
#: planner estimate is given instead, so a page over a huge table stays fast.
_count_cap: ContextVar[int | None] = ContextVar("backlane_count_cap", default=None)
#: The key of a status_counts result listing the counts that are estimates.
ESTIMATED = "estimated"


@contextmanager
def bounded_counts(cap: int) -> Iterator[None]:
    """Within this block, :func:`status_counts` counts exactly up to ``cap`` rows and estimates
    above it (PostgreSQL; SQLite always counts), naming the estimated counts under ``estimated``.
    The dashboard and ``backlane status`` bound their counts; ``backlane status --exact`` does not."""
    token = _count_cap.set(cap)
    try:
        yield
    finally:
        _count_cap.reset(token)


def _counts(session: Session, model: Any, conditions: Mapping[str, Condition]) -> dict[str, tuple[int, bool]]:
    """Rows matching each condition, all counted in one statement, and whether each is an estimate."""
    cap = _count_cap.get() if session.get_bind().dialect.name == "postgresql" else None
    if cap is not None:  # plans for these very values, not a prepared statement's generic one
        session.connection().exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")

    def counted(condition: Condition) -> Any:
        matching = select(model.id).where(condition)
        if cap is not None:
            matching = matching.limit(cap + 1)
        return select(func.count()).select_from(matching.subquery()).scalar_subquery()

    found = session.execute(select(*(counted(c).label(key) for key, c in conditions.items()))).one()
    counts: dict[str, tuple[int, bool]] = {}
    for key, condition in conditions.items():
        value = int(found._mapping[key] or 0)
        if cap is not None and value > cap:
            counts[key] = max(_planner_estimate(session, select(model.id).where(condition)), value), True
        else:
            counts[key] = value, False
    return counts


def _planner_estimate(session: Session, query: Any) -> int:
    """The rows PostgreSQL's planner expects ``query`` to return (from its statistics: no scan)."""
    compiled = query.compile(dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True})
    plan: Any = session.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params).scalar()
    return int(plan[0]["Plan"]["Plan Rows"])


def status_counts(
    session: Session,
    model: Any,
    *,
    due: Condition,
    done: Condition,
    failed: Condition,
    now: datetime,
    lease_column: str = LEASE_COLUMN,
) -> dict[str, Any]:
    """How many rows are due (waiting for a tick), in flight (leased), done and failed (within
    :func:`bounded_counts`, with ``estimated`` naming the counts that are estimates)."""
    free = lease_is_free(model, now, lease_column)
    conditions = {"due": and_(due, free), "in_flight": and_(due, not_(free)), "done": done, "failed": failed}
    counts: dict[str, Any] = {}
    estimated = []
    for key, (value, guessed) in _counts(session, model, conditions).items():
        counts[key] = value
        if guessed:
            estimated.append(key)
    if estimated:
        counts[ESTIMATED] = estimated
    return counts
