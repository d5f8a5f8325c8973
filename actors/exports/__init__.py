"""Exports: write the product catalogue to a file on an interval, page by page, resumably.

Replaces the product-export worker (every 5 minutes, 30 s after start). Discover
first asks the product API's health (2xx or 401 is up) and skips the run while
it is down, logging the outage once however many ticks and processes see it
(:mod:`actors.exports.outages`). A run pages through the products and appends each
page to a partial file beside the destination, recording the page cursor and the
file's length in the database after every page; the finished file replaces the
old one atomically. A run that fails resumes where it stopped: a retry continues
its own run, and after a run fails for good the next one starts at its page
instead of page 1. Page requests go through the product-API breaker shared by
every process. The health check runs in discover, at most once per tick and only
when an export is due, so a down API costs one request per tick, not one per export.
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, and_, insert, select, update

from actors.exports.claims import schedule_new_exports
from actors.exports.client import ProductApiClient
from actors.exports.commands import COMMANDS, COMMANDS_HELP, MAX_INTERVAL_SECONDS, MIN_INTERVAL_SECONDS
from actors.exports.files import encode_products, export_paths, path_conflict
from actors.exports.models import Export, ExportFormat, ExportOutcome, ExportRun, ServiceOutage
from actors.exports.outages import mark_down, mark_up
from actors.exports.settings import ExportsSettings
from backlane import (
    Context,
    Health,
    HealthRow,
    ItemTable,
    PermanentError,
    Pipeline,
    Purpose,
    TransientError,
    UnknownItem,
    register,
    row_id,
)
from backlane.clients.files import append_at, publish
from backlane.core.clock import as_utc
from backlane.resilience.breaker import CircuitBreaker

#: What the exports pipeline's functions get: ``ctx.config`` is its ExportsSettings.
ExportsContext = Context[ExportsSettings]

#: Name of the product API in service_outages and of its breaker.
PRODUCT_API = "product_api"

#: Exports whose next run time has come (ix_exports_due), longest overdue first; a run's lease is
#: renewed on every page. Done: the last run succeeded; failed: waiting to resume a failed run.
EXPORT_ROWS = ItemTable(
    Export,
    ready=lambda now: Export.next_run_at <= now,
    order_by=(Export.next_run_at, Export.id),
    done=and_(Export.run_id.is_(None), Export.last_success_at.is_not(None)),
    failed=Export.run_id.in_(select(ExportRun.id).where(ExportRun.outcome == ExportOutcome.FAILED.value)),
)


def fetch(ctx: ExportsContext, limit: int) -> list[int]:
    """Claim due exports, but only while the product API is up; nothing starts while it is down."""
    config = ctx.config
    now = ctx.clock.now()
    with ctx.db.transaction() as session:
        schedule_new_exports(session, now=now, initial_delay=timedelta(seconds=config.initial_delay_seconds))
    if not EXPORT_ROWS.any_due(ctx):
        return []
    health = ProductApiClient(ctx.config, ctx.pipeline.name).health(config.health_timeout_seconds)
    if not health.up:
        if mark_down(ctx.db, PRODUCT_API, now, health.detail):
            ctx.log.warning("product API is down (%s); exports are skipped until it is back", health.detail)
        return []
    down_since = mark_up(ctx.db, PRODUCT_API, now)
    if down_since is not None:
        ctx.log.warning("product API is back after %s down; exports resume", now - down_since)
    return EXPORT_ROWS.claim(ctx, limit)


def process(ctx: ExportsContext, item: Any) -> None:
    export_id = row_id(item, "export")
    config = ctx.config
    with ctx.db.transaction() as session:
        export = session.get(Export, export_id)
        run = session.get(ExportRun, export.run_id) if export is not None and export.run_id is not None else None
    if export is None:
        raise UnknownItem(f"export {export_id} does not exist")
    running = run is not None and run.outcome == ExportOutcome.RUNNING
    due = export.next_run_at is not None and as_utc(export.next_run_at) <= ctx.clock.now()
    if not (running or due):
        ctx.log.info("export %s is not due; nothing to do", export.name)
        return
    if export.format not in set(ExportFormat):
        raise PermanentError(f"export {export.name} has unknown format {export.format!r} (csv or jsonl)")
    _refuse_shared_path(ctx, export)
    final, partial = export_paths(config.output_dir, export.path)
    run_id, page, offset, rows = _start_or_resume(ctx, export, run, partial)
    client = ProductApiClient(ctx.config, ctx.pipeline.name)
    breaker = _breaker(ctx)
    while True:
        with breaker.guard():
            result = client.page(page, config.page_size)
        data = encode_products(export.format, result.items, first_page=page == 1)
        # Confined again at every write, not once per run: a symlink swapped in since must not
        # lead a page outside the output directory (append_at also refuses a symlink itself).
        final, partial = export_paths(config.output_dir, export.path)
        offset = append_at(partial, offset, data)
        rows += len(result.items)
        _save_progress(ctx, export_id, run_id, page=page, offset=offset, rows=rows)
        if not result.has_next:
            break
        page += 1
    final, partial = export_paths(config.output_dir, export.path)
    publish(partial, final, offset)
    _finish(ctx, export_id, run_id, ExportOutcome.SUCCEEDED, pages=page, rows=rows, file_path=str(final))
    ctx.log.info("export %s written: %d products in %d pages to %s", export.name, rows, page, final)


def _refuse_shared_path(ctx: ExportsContext, export: Export) -> None:
    """Refuse for good an export whose files another export writes too (rows inserted in SQL
    skip `exports add`'s check): two runs on one file lose each other's pages."""
    with ctx.db.transaction() as session:
        others = [(n, p) for i, n, p in session.execute(select(Export.id, Export.name, Export.path)) if i != export.id]
    conflict = path_conflict(export.path, others)
    if conflict is not None:
        raise PermanentError(f"export {export.name}: {conflict}")


def _breaker(ctx: ExportsContext) -> CircuitBreaker:
    """The product-API breaker every process shares (its state is in the database)."""
    config = ctx.config
    return CircuitBreaker(ctx.db, ctx.clock, PRODUCT_API, config.breaker_failure_threshold, config.breaker_open_seconds)


def _start_or_resume(
    ctx: ExportsContext, export: Export, run: ExportRun | None, partial: Path
) -> tuple[int, int, int, int]:
    """(run id, next page, partial file length, rows so far): continue this export's run, or
    start one — at the page an earlier failed run stopped at when its partial file is intact."""
    now = ctx.clock.now()
    page, offset, rows = export.next_page, export.partial_bytes, export.rows_written
    intact = offset == 0 or (partial.exists() and partial.stat().st_size >= offset)
    if not intact:
        ctx.log.warning("export %s: partial file %s lost; starting again at page 1", export.name, partial)
        page, offset, rows = 1, 0, 0
    running = run is not None and run.outcome == ExportOutcome.RUNNING
    if run is not None and running and intact:
        return run.id, page, offset, rows
    with ctx.db.transaction() as session:
        if run is not None and running:
            session.execute(
                update(ExportRun)
                .where(ExportRun.id == run.id)
                .values(outcome=ExportOutcome.FAILED.value, finished_at=now, error="partial file lost")
            )
        run_id = session.execute(
            insert(ExportRun).returning(ExportRun.id),
            {"export_id": export.id, "first_page": page, "rows": rows, "pages": page - 1, "started_at": now},
        ).scalar_one()
        session.execute(
            update(Export)
            .where(Export.id == export.id)
            .values(run_id=run_id, next_page=page, partial_bytes=offset, rows_written=rows, updated_at=now)
        )
    if page > 1:
        ctx.log.info("export %s resumes at page %d", export.name, page)
    return run_id, page, offset, rows


def _save_progress(ctx: ExportsContext, export_id: int, run_id: int, *, page: int, offset: int, rows: int) -> None:
    """Record ``page`` as written (its bytes are already fsynced) and renew the lease. The cursor
    only moves from ``page``: a second worker on the same run makes this one stop and retry."""
    now = ctx.clock.now()
    with ctx.db.transaction() as session:
        result = session.execute(
            update(Export)
            .where(Export.id == export_id, Export.run_id == run_id, Export.next_page == page)
            .values(
                next_page=page + 1,
                partial_bytes=offset,
                rows_written=rows,
                lease_until=now + timedelta(seconds=ctx.config.lease_seconds),
                updated_at=now,
            )
        )
        if not cast("CursorResult[Any]", result).rowcount:
            raise TransientError(f"export {export_id}: run {run_id} was advanced by another worker")
        session.execute(update(ExportRun).where(ExportRun.id == run_id).values(pages=page, rows=rows))


def _finish(
    ctx: ExportsContext,
    export_id: int,
    run_id: int,
    outcome: ExportOutcome,
    *,
    pages: int | None = None,
    rows: int | None = None,
    file_path: str | None = None,
    error: str | None = None,
) -> None:
    """Close the run in the history and schedule the export's next run one interval from now.
    A success clears the cursor; a failure keeps it, so the next run resumes there."""
    now = ctx.clock.now()
    run_values: dict[str, Any] = {"outcome": outcome.value, "finished_at": now, "error": error}
    export_values: dict[str, Any] = {
        "next_run_at": now + timedelta(seconds=_interval(ctx, export_id)),
        "lease_until": None,
        "updated_at": now,
    }
    if outcome is ExportOutcome.SUCCEEDED:
        run_values.update(pages=pages, rows=rows, file_path=file_path)
        export_values.update(run_id=None, next_page=1, partial_bytes=0, rows_written=0, last_success_at=now)
    with ctx.db.transaction() as session:
        session.execute(
            update(ExportRun)
            .where(ExportRun.id == run_id, ExportRun.outcome == ExportOutcome.RUNNING.value)
            .values(**run_values)
        )
        session.execute(update(Export).where(Export.id == export_id).values(**export_values))


def _interval(ctx: ExportsContext, export_id: int) -> float:
    """Seconds between two runs of this export: its own interval, else exports.interval_seconds."""
    with ctx.db.transaction() as session:
        own = session.scalar(select(Export.interval_seconds).where(Export.id == export_id))
    seconds = own or ctx.config.interval_seconds
    # A row written in SQL may hold any number; now + interval must stay a date (and a NaN none).
    if math.isnan(seconds):
        return MAX_INTERVAL_SECONDS
    return min(max(seconds, MIN_INTERVAL_SECONDS), MAX_INTERVAL_SECONDS)


def on_failure(ctx: ExportsContext, item: Any, reason: str) -> None:
    if not isinstance(item, int):
        return
    with ctx.db.transaction() as session:
        export = session.get(Export, item)
    if export is None:
        return
    run_id = export.run_id
    if run_id is None:  # refused before a run started (a path leaving the output directory): record it
        with ctx.db.transaction() as session:
            run_id = session.execute(
                insert(ExportRun).returning(ExportRun.id),
                {"export_id": item, "first_page": export.next_page, "started_at": ctx.clock.now()},
            ).scalar_one()
            session.execute(update(Export).where(Export.id == item).values(run_id=run_id))
    _finish(ctx, item, run_id, ExportOutcome.FAILED, error=reason)


def health(ctx: ExportsContext) -> list[HealthRow]:
    """The product API as exports see it: known outage and breaker state."""
    with ctx.db.transaction() as session:
        outage = session.get(ServiceOutage, PRODUCT_API)
    down_since = outage.down_since if outage is not None else None
    breaker = _breaker(ctx).state()["state"]
    healthy = down_since is None and breaker == "closed"
    down = f"down since {down_since.isoformat()}" if down_since is not None else "up"
    return [
        HealthRow(
            PRODUCT_API,
            Health.HEALTHY if healthy else Health.DEGRADED,
            summary=(f"down_since={down_since}, " if down_since is not None else "") + f"breaker={breaker}",
            columns={"state": down, "breaker": breaker},
            details={"down_since": down_since, "breaker": breaker},
        )
    ]


EXPORTS = register(
    Pipeline(
        name="exports",
        purpose=Purpose.EXPORT,
        config=ExportsSettings,
        table=EXPORT_ROWS,
        fetch=fetch,
        process=process,
        on_failure=on_failure,
        health=health,
        commands=COMMANDS,
        commands_help=COMMANDS_HELP,
        description="write the product export (CSV or JSON Lines) on its interval, resuming where it stopped",
    )
)
