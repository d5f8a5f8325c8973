"""A pipeline whose items its own function lists (objects in a store, entries of a feed), not rows.

:class:`~backlane.core.table.ItemTable` assumes a table: rows carry the lease discover
claims with, the failure reason an operator reads, the counts ``backlane status`` shows.
Items that are listed from somewhere else have none of that, so :class:`ListedItems`
gives them the same hooks over one framework table (:class:`~backlane.db.models.ListedItem`):

* ``fetch``: the pipeline's ``source(ctx, limit)`` names candidate items (validated text,
  e.g. keys; ``limit`` is the tick's limit plus the records held, see :meth:`ListedItems.fetch`);
  each is claimed with a lease (one atomic upsert per item), so a second clock
  or a tick before the lease ends never sends it twice, and one that failed for good is not
  offered again until an operator requeues it. A listing that raises is a discover failure:
  logged, nothing claimed, the next tick lists again;
* the per-item ``process`` (wrapped by :meth:`ListedItems.process`) releases the claim once
  the work is done and adds one to the pipeline's tally (``done``) unless the work found nothing
  to do (an object already gone: a duplicate message racing the first one counts no more);
* ``on_failure`` keeps the reason on the item's record, ``failed_reason`` reads it (a
  redelivery after that is dead-lettered again), ``reopen`` (a requeued dead letter) forgets it;
* ``stats``: in flight (leased), done (the tally), failed (records with a reason); due is
  not known without listing, so it is not counted;
* ``failed_items``: the items that failed for good, newest first, each with its reason and
  when, one bounded page at a time (the dashboard's pipeline page lists them).

Declared as ``Pipeline(process=ITEMS.process(work), **ITEMS.hooks(), ...)``; the items are
strings (``check`` validates each before it is claimed and again when its message comes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, or_, select

from backlane.core.log_limits import cut
from backlane.db.models.listed import ListedItem
from backlane.db.models.tallies import PipelineTally, add_done
from backlane.errors import MalformedMessage

if TYPE_CHECKING:
    from backlane.core.pipeline import Context, Item

#: Longest item text: an S3 key is at most 1,024 bytes.
MAX_ITEM_CHARS = 1024
#: Deepest page of failed items: OFFSET costs grow with it.
MAX_FAILED_PAGE = 1000


@dataclass(frozen=True)
class FailedItems:
    """One page of the items that failed for good: ``rows`` of ``{"item", "reason", "failed_at"}``,
    newest first; ``next_page``: the page to ask for next, None when this is the last."""

    rows: list[dict[str, Any]]
    next_page: int | None = None


def item_hash(item: str) -> str:
    return hashlib.sha256(item.encode("utf-8", "surrogatepass")).hexdigest()


def text_item(item: Any, what: str = "item") -> str:
    """``item`` as the non-empty printable text a listed item is, or :class:`MalformedMessage`."""
    if not isinstance(item, str) or not item or len(item) > MAX_ITEM_CHARS or not item.isprintable():
        shown = cut(repr(item), 120)
        raise MalformedMessage(f"{what} must be printable text of 1-{MAX_ITEM_CHARS} characters, got {shown}")
    return item


@dataclass(frozen=True)
class ListedItems:
    """Items named by ``source(ctx, limit)``, claimed and settled in the ``listed_items`` table."""

    #: Candidate items (text), at most ``limit``; raises when the listing fails.
    source: Callable[[Context[Any], int], Iterable[str]]
    #: The item checked (raises a PermanentError naming what is wrong), the text to claim.
    check: Callable[[Context[Any], Any], str] = lambda _ctx, item: text_item(item)
    #: A claimed item is not claimed again before this many seconds.
    lease_seconds: Callable[[Context[Any]], float] = lambda ctx: float(getattr(ctx.config, "lease_seconds", 600.0))

    def hooks(self) -> dict[str, Any]:
        return {
            "fetch": self.fetch,
            "on_failure": self.on_failure,
            "failed_reason": self.failed_reason,
            "reopen": self.reopen,
            "stats": self.stats,
            "failed_items": self.failed_items,
        }

    # --- discover -----------------------------------------------------------------------------

    def fetch(self, ctx: Context[Any], limit: int) -> Sequence[Item]:
        """List, then claim each listed item that is neither in flight nor failed, until ``limit``
        are claimed. The listing asks for ``limit`` more than the records held (in flight or
        failed), so items it cannot claim never crowd out those it can."""
        with ctx.db.transaction() as session:
            held = session.scalar(select(func.count()).where(ListedItem.pipeline == ctx.pipeline.name)) or 0
        listed: list[str] = []
        for candidate in self.source(ctx, limit + int(held)):
            try:
                listed.append(self.check(ctx, candidate))
            except Exception as exc:  # a listed name we may not touch: left alone, said once
                ctx.log.warning("listed item %s refused before any work: %s", cut(repr(candidate), 120), cut(str(exc)))
        if not listed:
            return []
        now = ctx.clock.now()
        until = now + timedelta(seconds=self.lease_seconds(ctx))
        name = ctx.pipeline.name
        claimed: list[str] = []
        with ctx.db.transaction() as session:
            for item in dict.fromkeys(listed):  # the same name twice in a listing is one item
                if self._claim(ctx, session, name, item, now, until):
                    claimed.append(item)
                    if len(claimed) >= limit:
                        break
        return claimed

    @staticmethod
    def _claim(ctx: Context[Any], session: Any, name: str, item: str, now: datetime, until: datetime) -> bool:
        """One atomic upsert: a new record, or an old one whose lease ended and that has not failed."""
        if ctx.db.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            insert: Any = pg_insert(ListedItem)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            insert = sqlite_insert(ListedItem)
        table = ListedItem.__table__
        statement = insert.values(
            pipeline=name, item_hash=item_hash(item), item=item, lease_until=until, updated_at=now
        ).on_conflict_do_update(
            index_elements=[table.c.pipeline, table.c.item_hash],
            set_={"lease_until": until, "updated_at": now},
            where=and_(table.c.failed_reason.is_(None), or_(table.c.lease_until.is_(None), table.c.lease_until <= now)),
        )
        # RETURNING, not rowcount: what a driver counts for an upsert that updated nothing differs.
        return session.execute(statement.returning(table.c.item_hash)).first() is not None

    # --- per item -----------------------------------------------------------------------------

    def process(self, work: Callable[[Context[Any], str], bool | None]) -> Callable[[Context[Any], Item], None]:
        """``work`` on the checked item, then its claim released and the tally counted (one transaction).
        ``work`` returning False means done, nothing to do (an object already gone): not counted."""

        def process(ctx: Context[Any], item: Item) -> None:
            text = self.check(ctx, item)
            did = work(ctx, text)
            with ctx.db.transaction() as session:
                session.execute(self._mine(ctx, text, delete(ListedItem)).where(ListedItem.failed_reason.is_(None)))
                if did is not False:
                    add_done(session, ctx.pipeline.name, ctx.clock.now())

        process.__name__ = process.__qualname__ = getattr(work, "__name__", "process")
        process.__module__ = getattr(work, "__module__", __name__)
        return process

    @staticmethod
    def _mine(ctx: Context[Any], item: str, statement: Any) -> Any:
        return statement.where(ListedItem.pipeline == ctx.pipeline.name, ListedItem.item_hash == item_hash(item))

    def on_failure(self, ctx: Context[Any], item: Item, reason: str) -> None:
        if not isinstance(item, str) or not item:
            return  # a malformed message names no item: its dead letter holds the reason
        now = ctx.clock.now()
        with ctx.db.transaction() as session:
            record = session.get(ListedItem, (ctx.pipeline.name, item_hash(item)))
            if record is None:
                record = ListedItem(pipeline=ctx.pipeline.name, item_hash=item_hash(item), item=item)
                session.add(record)
            record.failed_reason, record.failed_at, record.lease_until, record.updated_at = reason, now, None, now

    def failed_reason(self, ctx: Context[Any], item: Item) -> str | None:
        if not isinstance(item, str) or not item:
            return None
        with ctx.db.transaction() as session:
            record = session.get(ListedItem, (ctx.pipeline.name, item_hash(item)))
            return record.failed_reason if record is not None else None

    def reopen(self, ctx: Context[Any], item: Item) -> None:
        if isinstance(item, str) and item:
            with ctx.db.transaction() as session:
                session.execute(self._mine(ctx, item, delete(ListedItem)))

    def stats(self, ctx: Context[Any]) -> dict[str, int]:
        now = ctx.clock.now()
        mine = ListedItem.pipeline == ctx.pipeline.name
        with ctx.db.transaction() as session:
            failed = session.scalar(select(func.count()).where(mine, ListedItem.failed_reason.is_not(None))) or 0
            in_flight = (
                session.scalar(
                    select(func.count()).where(mine, ListedItem.failed_reason.is_(None), ListedItem.lease_until > now)
                )
                or 0
            )
            tally = session.get(PipelineTally, ctx.pipeline.name)
        return {"in_flight": int(in_flight), "done": tally.done if tally is not None else 0, "failed": int(failed)}

    def failed_items(self, ctx: Context[Any], limit: int = 50, page: int = 0, search: str = "") -> FailedItems:
        """The items that failed for good, latest first, with their reasons: ``limit`` of them from
        ``page`` (at most :data:`MAX_FAILED_PAGE`); ``search``: only the item that is exactly it.
        Reads this pipeline's records only (the primary key's first column); the table holds
        items in flight and failed, never those done."""
        page = min(max(page, 0), MAX_FAILED_PAGE)
        where = [ListedItem.pipeline == ctx.pipeline.name, ListedItem.failed_reason.is_not(None)]
        if search.strip():
            where.append(ListedItem.item_hash == item_hash(search.strip()))
        query = (
            select(ListedItem.item, ListedItem.failed_reason, ListedItem.failed_at)
            .where(*where)
            .order_by(ListedItem.failed_at.desc(), ListedItem.item_hash)
            .offset(page * limit)
            .limit(limit + 1)
        )
        with ctx.db.transaction() as session:
            found = session.execute(query).all()
        rows = [{"item": item, "reason": reason, "failed_at": at} for item, reason, at in found[:limit]]
        more = len(found) > limit and page < MAX_FAILED_PAGE
        return FailedItems(rows, page + 1 if more else None)

    def failures(self, ctx: Context[Any], limit: int = 50) -> list[dict[str, Any]]:
        """The items that failed for good, latest first, with their reasons (the first page)."""
        return self.failed_items(ctx, limit).rows
