"""A pipeline's rows as the dashboard lists them: by state, newest first, one page at a time.

Every query is bounded and indexed, whatever the table size: a page is ``LIMIT n`` on the
primary key (keyset pagination: ``id < before``, never ``OFFSET``), a state is its
pipeline's own condition (the partial index of its due predicate, ``ix_orders_status_id``
for orders), a search is an exact match on the id or on a column the table declares
searchable (each indexed). The states are those ``backlane status`` counts, from the same
:class:`~backlane.core.table.ItemTable` conditions. A page's rows also show their attempts
and last outcome (:mod:`backlane.core.attempts`), read with one query on ``item_attempts``'
primary key for the page's ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ColumnElement, LargeBinary, and_, not_, select

from backlane.core.clock import as_utc
from backlane.core.log_limits import cut
from backlane.db.claims import lease_is_free
from backlane.db.models.attempts import FAILED, SUCCEEDED, ItemAttempts

if TYPE_CHECKING:
    from backlane.core.pipeline import Context
    from backlane.core.table import ItemTable

#: The states a page can show, in the order they are offered.
STATES = ("failed", "due", "in_flight", "done", "all")
#: Longest text shown in one cell; the rest is cut, saying how long it was.
CELL_LIMIT = 300


#: Deepest page of a list in claim order (due, in flight): OFFSET costs grow with it.
MAX_PAGE = 1000
#: The columns a page adds from the item's attempt record (:mod:`backlane.core.attempts`).
ATTEMPTS, LAST_OUTCOME = "attempts", "last outcome"
#: What a cell shows when there is nothing to say (a row not tried yet, or tried before records began).
NOTHING = "—"


@dataclass(frozen=True)
class ItemPage:
    columns: list[str]
    rows: list[dict[str, Any]]
    #: The id to pass as ``before`` for the next page (lists newest first), else None.
    next_before: Any = None
    #: The ``page`` to ask for next (lists in claim order), else None.
    next_page: int | None = None


def state_condition(table: ItemTable, ctx: Context[Any], state: str, now: datetime) -> ColumnElement[bool]:
    """Rows of this registration in ``state`` (see :data:`STATES`)."""
    mine = table.mine(ctx)
    if state == "failed":
        return and_(table.failed, mine)
    if state == "done":
        return and_(table.done, mine)
    if state in ("due", "in_flight"):
        free = lease_is_free(table.model, now, table.lease_column)
        return and_(table.due_now(ctx, now), free if state == "due" else not_(free))
    return mine


def search_condition(table: ItemTable, text: str) -> ColumnElement[bool]:
    """Rows whose id, or one of the table's searchable columns, is exactly ``text``."""
    return table.matching(text)


def shown_columns(table: ItemTable) -> list[Any]:
    """The columns a page shows: all but JSON documents (an order's payload) and binary values
    (a photo's embedding vector: kilobytes no one reads in a table), id first."""
    return [c for c in table.model.__table__.c if not isinstance(c.type, JSON | LargeBinary)]


def list_items(
    ctx: Context[Any],
    table: ItemTable,
    *,
    state: str,
    search: str = "",
    before: Any = None,
    page: int = 0,
    limit: int = 50,
) -> ItemPage:
    """One page of rows in ``state`` (matching ``search``): rows still due (or in flight) in the
    order discover claims them, along the due predicate's partial index, ``page`` by page;
    the others newest first, along the id (``before``: the last page's last id)."""
    model = table.model
    columns = shown_columns(table)
    where = [state_condition(table, ctx, state, ctx.clock.now())]
    if search.strip():
        where.append(search_condition(table, search))
    claim_order = state in ("due", "in_flight") and bool(table.order_by)
    final = (table.done.label("_done"), table.failed.label("_failed"))
    query = select(*columns, *final).where(*where).limit(limit + 1)
    if claim_order:
        page = min(max(page, 0), MAX_PAGE)
        query = query.order_by(*table.order_by).offset(page * limit)
    else:
        query = query.where(model.id < before) if before is not None else query
        query = query.order_by(model.id.desc())
    with ctx.db.connection() as connection:
        custom_plans(connection)
        found = connection.execute(query).mappings().all()
        records = attempt_records(connection, ctx.pipeline.name, [row[model.id.name] for row in found[:limit]])
    reason = table.reason.name if table.reason is not None else None
    rows = []
    for row in found[:limit]:
        done, failed = bool(row["_done"]), bool(row["_failed"])
        cells = {c.name: _cell(row[c.name]) for c in columns}
        if done or failed:
            cells[table.lease_column] = None  # a settled row keeps its last lease: not a lease any more
        record = records.get(str(row[model.id.name]))
        shown = attempt_cells(record, done=done, failed=failed, failure_reason=row[reason] if reason else None)
        rows.append({**cells, **shown})
    names = _with_attempt_columns([c.name for c in columns], reason)
    more = len(found) > limit
    if claim_order:
        return ItemPage(names, rows, next_page=page + 1 if more and page < MAX_PAGE else None)
    return ItemPage(names, rows, next_before=found[limit - 1][model.id.name] if more else None)


def attempt_records(connection: Any, pipeline: str, ids: list[Any]) -> dict[str, Any]:
    """The attempt records of a page's rows, by item id: one query on the records' primary key."""
    if not ids:
        return {}
    query = select(ItemAttempts.item_id, ItemAttempts.attempts, ItemAttempts.last_outcome, ItemAttempts.last_reason)
    query = query.where(ItemAttempts.pipeline == pipeline, ItemAttempts.item_id.in_([str(i) for i in ids]))
    return {record.item_id: record for record in connection.execute(query)}


def attempt_cells(record: Any, *, done: bool, failed: bool, failure_reason: str | None) -> dict[str, Any]:
    """The "attempts" and "last outcome" cells of one row, from its attempt record (None: none).

    Only tries that were not a first-try success are recorded, so a done row without a record
    (or whose record is from an earlier run, before a requeue) succeeded on its first try. A row
    still due without one has not failed yet; a failed row without one failed before records
    began (or its record could not be written): its attempts are not known."""
    if done and (record is None or record.last_outcome != SUCCEEDED):
        return {ATTEMPTS: 1, LAST_OUTCOME: SUCCEEDED}
    if record is None:
        return {ATTEMPTS: NOTHING, LAST_OUTCOME: FAILED if failed else NOTHING}
    outcome = record.last_outcome
    reason = record.last_reason
    if reason and reason != (cut(failure_reason) if failure_reason else None):
        outcome = f"{outcome} (last failure: {reason})" if outcome == SUCCEEDED else f"{outcome}: {reason}"
    return {ATTEMPTS: record.attempts, LAST_OUTCOME: _cell(outcome)}


def _with_attempt_columns(names: list[str], reason: str | None) -> list[str]:
    """The page's columns with the attempt columns before the failure reason (else last)."""
    at = names.index(reason) if reason in names else len(names)
    return [*names[:at], ATTEMPTS, LAST_OUTCOME, *names[at:]]


def custom_plans(connection: Any) -> None:
    """Plan this transaction's queries for their actual values (PostgreSQL). After five runs
    psycopg prepares a statement and PostgreSQL may switch to a generic plan, which cannot
    tell that ``status = 'failed'`` is rare: it walked the primary key backwards through a
    million settled orders to fill a page of failed ones."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str) and len(value) > CELL_LIMIT:
        return f"{value[:CELL_LIMIT]}… ({len(value):,} chars)"
    return value


def parse_before(text: str | None) -> int | None:
    """The ``before`` (or ``page``) query parameter: a number, or None when absent or not one."""
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    return int(text) if text and text.isascii() and text.isdigit() and len(text) < 19 else None
