"""A pipeline over a table, declared once: which rows are due, in which order, under which lease.

Most pipelines work on the rows of one table: discover claims the due ones with a
lease, the per-item actor re-reads its row, a final failure marks the row failed
with the reason, an operator's requeue makes it workable again, and ``backlane
status`` counts the rows in each state. An :class:`ItemTable` declares what
differs from one pipeline to the next (the model, its due predicate, the claim
order, what failing and reopening write) and gives the pipeline its ``fetch``,
``stats``, ``on_failure`` and ``reopen``: ``Pipeline(table=..., process=...)``.

The due predicate is defined once, beside the model, where it is also the
predicate of the table's partial index (see
:func:`backlane.db.models.base.literal_in`); the queries are those of
:mod:`backlane.db.claims`. A row's lease lasts its section's ``lease_seconds``
(:class:`TableSettings`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from pydantic import Field
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Row,
    and_,
    bindparam,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    update,
)

from backlane.core.items import is_row_id
from backlane.db import claims
from backlane.settings import PipelineSettings

if TYPE_CHECKING:
    from backlane.core.pipeline import Context, Item


@dataclass(frozen=True)
class Fenced:
    """A lease taken by :meth:`ItemTable.fence` just before an external call: the write after the
    call is guarded by ``token`` (:meth:`ItemTable.update`)."""

    token: datetime


class TableSettings(PipelineSettings):
    """The section of a pipeline over a table: a pipeline's settings and its rows' lease."""

    #: A claimed row is not claimed again before this many seconds (its lease).
    lease_seconds: float = Field(default=600.0, gt=0)


@dataclass(frozen=True)
class ItemTable:
    """The table a pipeline's items are rows of, and what its hooks do with them."""

    #: The SQLAlchemy model: an ``id`` primary key and a lease column.
    model: Any
    #: Rows with work left, defined once beside the model (it is the partial index's predicate).
    due: ColumnElement[bool] = field(default_factory=true)
    #: Claim order, the index's columns (longest waiting first).
    order_by: Sequence[Any] = ()
    #: The part of "due" that moves with time (e.g. a scheduled time has come), given now.
    ready: Callable[[datetime], ColumnElement[bool]] | None = None
    #: The column naming the registration a row belongs to, when one handler is registered
    #: under several names (each claims, counts and writes only its own rows).
    owner: Any = None
    #: Written with the lease when a row is claimed (e.g. a status saying so).
    claimed: Mapping[str, Any] = field(default_factory=dict)
    #: Rows done, and failed for good, for ``backlane status``.
    done: ColumnElement[bool] = field(default_factory=false)
    failed: ColumnElement[bool] = field(default_factory=false)
    #: What a final failure writes to a due row, given the reason and the time; None: no ``on_failure``.
    fail: Callable[[str, datetime], Mapping[str, Any]] | None = None
    #: What an operator's requeue writes to a failed row to make it due again; None: no ``reopen``.
    reopened: Mapping[str, Any] | None = None
    #: The column holding a row's lease.
    lease_column: str = claims.LEASE_COLUMN
    #: Columns an operator may look a row up by besides its id, each indexed (orders: the
    #: request id, the order API's id); the dashboard's search box matches them exactly.
    search: Sequence[Any] = ()
    #: The column holding a failed row's reason, shown beside it (the dashboard).
    reason: Any = None
    #: What an operator's cancel writes to a row with work left, given "cancelled by WHO: WHY"
    #: and the time (it settles the row: no longer due); None: its items cannot be cancelled.
    cancel: Callable[[str, datetime], Mapping[str, Any]] | None = None
    #: Rows with work left that may still be cancelled (orders: not yet placed at the API).
    cancellable: ColumnElement[bool] = field(default_factory=true)
    #: Rows an operator cancelled: reopening one writes ``reopened`` and lets discover take it.
    cancelled: ColumnElement[bool] = field(default_factory=false)
    #: The per-item statements (load, update), built once per shape and registration instead of
    #: once per item: building and keying them cost a per-order actor more CPU than its
    #: database round trips (benchmarks/compare.py).
    _statements: dict[tuple[Any, ...], Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def hooks(self) -> dict[str, Callable[..., Any]]:
        """The pipeline hooks this table gives: fetch and stats, on_failure and reopen when declared."""
        given: dict[str, Callable[..., Any]] = {"fetch": self.fetch, "stats": self.stats}
        if self.fail is not None:
            given["on_failure"] = self.on_failure
            given["failed_reason"] = self.failed_reason
        if self.reopened is not None:
            given["reopen"] = self.reopen
        if self.cancel is not None:
            given["cancel"] = self.cancel_rows
            if self.reopened is not None:
                given["uncancel"] = self.reopen_cancelled
        return given

    # -- conditions --------------------------------------------------------------

    def mine(self, ctx: Context) -> ColumnElement[bool]:
        """This registration's rows (all rows unless the table has an ``owner`` column)."""
        return true() if self.owner is None else cast(ColumnElement[bool], self.owner == ctx.pipeline.name)

    def due_now(self, ctx: Context, now: datetime) -> ColumnElement[bool]:
        """Rows of this registration that are due at ``now`` (leased or not)."""
        ready = self.ready(now) if self.ready is not None else true()
        return and_(self.due, ready, self.mine(ctx))

    def row(self, ctx: Context, row_id: Any) -> ColumnElement[bool]:
        """Row ``row_id`` while it still has work left: guards a write against a settled row."""
        return and_(self.model.id == row_id, self.due, self.mine(ctx))

    def lease(self, ctx: Context) -> timedelta:
        return timedelta(seconds=ctx.config.lease_seconds)

    # -- queries -----------------------------------------------------------------

    def claim(self, ctx: Context, limit: int, *tiers: ColumnElement[bool]) -> list[Any]:
        """Lease up to ``limit`` due rows and return their ids, in one transaction. With
        ``tiers`` (extra conditions), all due rows of a tier come before the next tier's."""
        now = ctx.clock.now()
        due = self.due_now(ctx, now)
        values = {**self.claimed, **self._touched(now)} if self.claimed else {}
        ids: list[Any] = []
        with ctx.db.transaction() as session:
            for tier in tiers or (true(),):
                ids += claims.claim(
                    session,
                    self.model,
                    due=and_(due, tier),
                    order_by=self.order_by,
                    limit=limit - len(ids),
                    now=now,
                    lease=self.lease(ctx),
                    values=values,
                    lease_column=self.lease_column,
                )
        return ids

    def claim_one(self, ctx: Context, row_id: Any) -> bool | None:
        """Lease row ``row_id`` if it is due and free: True; False when it is settled or in
        flight; None when there is no such row (yet)."""
        now = ctx.clock.now()
        with ctx.db.transaction() as session:
            claimed = claims.claim_one(
                session,
                self.model,
                row_id,
                due=self.row(ctx, row_id),
                now=now,
                lease=self.lease(ctx),
                lease_column=self.lease_column,
            )
            if claimed:
                return True
            return False if session.scalar(select(self.model.id).where(self.model.id == row_id)) is not None else None

    def any_due(self, ctx: Context) -> bool:
        """Whether any row is due and free (a cheap look before an expensive step)."""
        now = ctx.clock.now()
        with ctx.db.transaction() as session:
            return claims.any_due(
                session, self.model, due=self.due_now(ctx, now), now=now, lease_column=self.lease_column
            )

    def load(self, ctx: Context, row_id: Any, *columns: Any) -> Row[*tuple[Any, ...]] | None:
        """Row ``row_id`` (the given columns, all by default), None when there is none. Its
        ``has_work`` says whether it is still due, by the predicate the claims use, so the
        per-item work never restates it: a settled row is left alone."""
        key = ("load", columns, ctx.pipeline.name)
        statement = self._statements.get(key) if self.ready is None else None
        if statement is None:
            selected = columns or tuple(self.model.__table__.c)
            has_work = self.due_now(ctx, ctx.clock.now()).label("has_work")
            statement = select(*selected, has_work).where(self.model.id == bindparam("row_id"))
            if self.ready is None:  # else "due" holds the time: this statement is the time's own
                self._statements[key] = statement
        with ctx.db.statement() as connection:
            return cast(Row[Any] | None, connection.execute(statement, {"row_id": row_id}).one_or_none())

    def update(self, ctx: Context, row_id: Any, *, fenced: Fenced | None = None, **values: Any) -> bool:
        """Write to row ``row_id`` only while it has work left (a settled row is never touched
        again); False when it had none. ``fenced`` (what :meth:`fence` returned): only while the
        row's lease is still that one, so a worker whose lease was taken over writes nothing."""
        values = {**self._touched(ctx.clock.now()), **values}
        key = ("update", tuple(values), ctx.pipeline.name, fenced is not None)
        statement = self._statements.get(key)
        if statement is None:  # each value a parameter, typed by its column
            setting: dict[str, Any] = {name: bindparam(f"set_{name}") for name in values}
            where = self.row(ctx, bindparam("row_id"))
            if fenced is not None:
                where = and_(where, getattr(self.model, self.lease_column) == bindparam("fence_token"))
            statement = update(self.model).where(where).values(setting)
            self._statements[key] = statement
        params = {"row_id": row_id, **{f"set_{k}": v for k, v in values.items()}}
        if fenced is not None:
            params["fence_token"] = fenced.token
        with ctx.db.statement() as connection:
            result = connection.execute(statement, params)
        return bool(cast(CursorResult[Any], result).rowcount)

    def fence(self, ctx: Context, row_id: Any, token: datetime | None) -> Fenced | None:
        """At the last moment before an external call: take row ``row_id``'s lease ``token`` (the
        lease it had when this worker loaded it) for one more lease; None when the row is settled
        or another worker claimed it since (its lease ran out while this one was stuck): then do
        nothing, that worker does the call. Pass the result to :meth:`update` as ``fenced``."""
        now = ctx.clock.now()
        with ctx.db.transaction() as session:
            taken = claims.fence(
                session,
                self.model,
                row_id,
                token=token,
                due=self.row(ctx, row_id),
                now=now,
                lease=self.lease(ctx),
                lease_column=self.lease_column,
            )
        return None if taken is None else Fenced(taken)

    # -- the hooks ---------------------------------------------------------------

    def fetch(self, ctx: Context, limit: int) -> list[Any]:
        return self.claim(ctx, limit)

    def stats(self, ctx: Context) -> dict[str, int]:
        now = ctx.clock.now()
        mine = self.mine(ctx)
        with ctx.db.transaction() as session:
            return claims.status_counts(
                session,
                self.model,
                due=self.due_now(ctx, now),
                done=and_(self.done, mine),
                failed=and_(self.failed, mine),
                now=now,
                lease_column=self.lease_column,
            )

    def on_failure(self, ctx: Context, item: Item, reason: str) -> None:
        """Mark the row failed with the reason and release its lease."""
        if self.fail is not None and is_row_id(item):
            self.update(ctx, item, **self.fail(reason, ctx.clock.now()), **{self.lease_column: None})

    def failed_reason(self, ctx: Context, item: Item) -> str | None:
        """The reason row ``item`` failed for good with ("" when the table keeps none); None
        while it has not failed (or is no row of this registration)."""
        if not is_row_id(item):
            return None
        reason = self.reason if self.reason is not None else literal("")
        failed_row = and_(self.model.id == item, self.failed, self.mine(ctx))
        with ctx.db.transaction() as session:
            found = session.execute(select(reason).where(failed_row)).first()
        return None if found is None else str(found[0] or "")

    def reopen(self, ctx: Context, item: Item) -> None:
        """Make a failed row due again, leased to the requeued message that is about to work on it."""
        if self.reopened is not None and is_row_id(item):
            failed_row = and_(self.model.id == item, self.failed, self.mine(ctx))
            lease = {self.lease_column: ctx.clock.now() + self.lease(ctx)}
            self._update(ctx, failed_row, {**self.reopened, **lease})

    def cancel_rows(self, ctx: Context, ids: Sequence[Any], why: str) -> list[Any]:
        """Settle rows ``ids`` as cancelled (``why``: "cancelled by WHO: WHY") where they still
        have work left and may be cancelled, in one statement; the ids it cancelled. A message
        for one of them that arrives later finds its row settled and does nothing."""
        if self.cancel is None or not ids:
            return []
        now = ctx.clock.now()
        where = and_(self.model.id.in_(list(ids)), self.due, self.mine(ctx), self.cancellable)
        values = {**self._touched(now), **self.cancel(why, now), self.lease_column: None}
        statement = update(self.model).where(where).values(values).returning(self.model.id)
        with ctx.db.transaction() as session:
            return list(session.scalars(statement))

    def reopen_cancelled(self, ctx: Context, ids: Sequence[Any], _why: str = "") -> list[Any]:
        """Make cancelled rows ``ids`` due again (discover takes them at its next tick); the ids reopened."""
        if self.reopened is None or not ids:
            return []
        where = and_(self.model.id.in_(list(ids)), self.cancelled, self.mine(ctx))
        values = {**self._touched(ctx.clock.now()), **self.reopened, self.lease_column: None}
        statement = update(self.model).where(where).values(values).returning(self.model.id)
        with ctx.db.transaction() as session:
            return list(session.scalars(statement))

    def matching(self, text: str) -> ColumnElement[bool]:
        """Rows whose id, or one of the table's searchable columns, is exactly ``text``."""
        text = text.strip()
        matches = [column == text for column in self.search]
        if text.isascii() and text.isdigit() and len(text) < 19:
            matches.append(self.model.id == int(text))
        return or_(*matches) if matches else not_(true())

    def cancellable_count(self, ctx: Context, search: str) -> int:
        """How many rows matching ``search`` a cancel would settle now."""
        where = [self.due, self.mine(ctx), self.cancellable, self.matching(search)]
        with ctx.db.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(self.model).where(*where)) or 0)

    def cancellable_ids(self, ctx: Context, search: str, *, after: Any = None, limit: int = 500) -> list[Any]:
        """Ids of rows matching ``search`` that a cancel would settle, by id, after ``after``:
        a selection walked a page at a time, in bounded memory, however large."""
        where = [self.due, self.mine(ctx), self.cancellable, self.matching(search)]
        if after is not None:
            where.append(self.model.id > after)
        statement = select(self.model.id).where(*where).order_by(self.model.id).limit(limit)
        with ctx.db.transaction() as session:
            return list(session.scalars(statement))

    # -----------------------------------------------------------------------------

    def _touched(self, now: datetime) -> dict[str, Any]:
        return {"updated_at": now} if "updated_at" in self.model.__table__.c else {}

    def _update(self, ctx: Context, where: ColumnElement[bool], values: Mapping[str, Any]) -> bool:
        statement = update(self.model).where(where).values({**self._touched(ctx.clock.now()), **values})
        with ctx.db.statement() as connection:
            result = connection.execute(statement)
        return bool(cast(CursorResult[Any], result).rowcount)
