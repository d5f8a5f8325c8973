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

from backlane.db.models import Export

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
    ``backlane status`` counts exactly; the dashboard bounds its counts."""
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


def schedule_new_exports(session: Session, *, now: datetime, initial_delay: timedelta) -> int:
    """Give exports never seen before their first run time: now + the initial delay."""
    result = session.execute(update(Export).where(Export.next_run_at.is_(None)).values(next_run_at=now + initial_delay))
    return int(cast(CursorResult[Any], result).rowcount or 0)


# -- catalog sections ---------------------------------------------------------
# Twelve rows, so claiming locks them all (in name order, so two claimers never
# deadlock): the count of unexpired leases and the new leases are then decided in
# one transaction, and max_concurrent holds across every worker and clock.

#: What a refresh message does when it arrives (see start_section_refresh).
SECTION_GO, SECTION_STALE, SECTION_BUSY, SECTION_PUBLISH = "go", "stale", "busy", "publish"


def lock_sections(session: Session, plans: dict[str, tuple[bool, timedelta]], now: datetime) -> list[Any]:
    """Every section row (created when missing), locked for this transaction, by name."""
    from backlane.db.models import CatalogSection
    from backlane.db.rows import insert_missing

    insert_missing(session, CatalogSection, [{"name": name, "updated_at": now} for name in plans])
    query = select(CatalogSection).order_by(CatalogSection.name).with_for_update()
    return list(session.scalars(query.execution_options(populate_existing=True)))


def _section_states(rows: list[Any], plans: dict[str, tuple[bool, timedelta]]) -> list[Any]:
    from backlane.core.clock import as_utc
    from backlane.pipelines.catalog.schedule import SectionState

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
    import uuid

    from backlane.pipelines.catalog.schedule import plan_claims

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
    from backlane.pipelines.catalog.schedule import may_start

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
