"""Staging batches: the generic work-item engine's own example, one handler registered twice.

Replaces the generic work-item engine's vendor-scraper sources. A staging batch
waits for a named processor; each registration of this handler is such a
processor (``staging_acme``, ``staging_globex``): it claims only batches naming
it, up to its own limit per cycle, on its own queue, with its own settings
section, and hands each batch to its vendor's scraper (``Pipeline.params``). So
thousands of batches waiting for one vendor never delay the other: they are
different rows of the index, different claims and different queues.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from actors.staging.client import VendorScraperClient
from actors.staging.models import STAGING_DUE, StagingBatch, StagingStatus
from actors.staging.settings import StagingSettings
from backlane import Context, ItemTable, PermanentError, Pipeline, Purpose, UnknownItem, register, row_id
from backlane.core.registry import REGISTRY

#: Open batches of one processor (each registration reads its own slice of
#: ix_staging_batches_due), oldest first, marked processing when claimed.
BATCH_ROWS = ItemTable(
    StagingBatch,
    due=STAGING_DUE,
    order_by=(StagingBatch.created_at, StagingBatch.id),
    owner=StagingBatch.processor,
    claimed={"status": StagingStatus.PROCESSING.value},
    done=StagingBatch.status == StagingStatus.COMPLETED.value,
    failed=StagingBatch.status == StagingStatus.FAILED.value,
    fail=lambda reason, now: {"status": StagingStatus.FAILED.value, "reason": reason, "finished_at": now},
    reason=StagingBatch.reason,
)


def process(ctx: Context[StagingSettings], item: Any) -> None:
    batch_id = row_id(item, "staging batch")
    batch = BATCH_ROWS.load(ctx, batch_id)
    if batch is None:
        raise UnknownItem(f"staging batch {batch_id} does not exist")
    if batch.processor != ctx.pipeline.name:
        raise PermanentError(f"staging batch {batch_id} waits for {batch.processor!r}, not {ctx.pipeline.name!r}")
    if not batch.has_work:
        ctx.log.info("staging batch %s is already %s; nothing to do", batch_id, batch.status)
        return
    config = ctx.config
    vendor = ctx.pipeline.params["vendor"]
    client = VendorScraperClient(config.base_url, timeout=config.timeout, oauth=config.oauth, section=ctx.pipeline.name)
    # The fence, at the last moment before the vendor's scrape: the lease this worker loaded the
    # batch under must still be the batch's. A worker stuck past its lease (a long GC pause, a
    # frozen VM) whose batch another worker re-claimed does nothing; that worker scrapes it.
    fenced = BATCH_ROWS.fence(ctx, batch_id, batch.lease_until)
    if fenced is None:
        ctx.log.warning("staging batch %s was claimed again while this worker was stuck; leaving it", batch_id)
        return
    records = client.scrape(vendor, f"{ctx.pipeline.name}-{batch_id}", batch.payload)
    # Only an open batch of this processor, still under this worker's lease: a settled or foreign
    # batch, or one another worker took over meanwhile, is never touched.
    written = BATCH_ROWS.update(
        ctx,
        batch_id,
        fenced=fenced,
        status=StagingStatus.COMPLETED.value,
        reason=f"vendor {vendor} scraped {records} record(s)",
        finished_at=ctx.clock.now(),
        lease_until=None,
    )
    if not written:
        ctx.log.warning("staging batch %s was taken over during its scrape; its new holder records it", batch_id)


#: Unclaimed batches last warned about by this process, so each change is one warning, not one per tick.
_warned: dict[str, int] = {}


def unclaimed(ctx: Context[StagingSettings]) -> dict[str, int]:
    """Open batches per processor that no registration of this handler claims (a typo, a vendor
    removed): they would wait forever, so they are counted and warned about."""
    processors = sorted(reg.pipeline.name for reg in REGISTRY if reg.pipeline.table is BATCH_ROWS)
    with ctx.db.transaction() as session:
        rows = session.execute(
            select(StagingBatch.processor, func.count())
            .where(STAGING_DUE, StagingBatch.processor.not_in(processors))
            .group_by(StagingBatch.processor)
        ).all()
    return {str(processor): int(count) for processor, count in rows}


def fetch(ctx: Context[StagingSettings], limit: int) -> list[Any]:
    """Claim this processor's batches; warn (once per change) about batches no processor claims."""
    orphans = unclaimed(ctx)
    if orphans != _warned:
        if orphans:
            known = ", ".join(sorted(reg.pipeline.name for reg in REGISTRY if reg.pipeline.table is BATCH_ROWS))
            shown = ", ".join(f"{count} for {name!r}" for name, count in sorted(orphans.items()))
            ctx.log.warning("staging batches no registration claims: %s (registered: %s)", shown, known)
        _warned.clear()
        _warned.update(orphans)
    return BATCH_ROWS.claim(ctx, limit)


def stats(ctx: Context[StagingSettings]) -> dict[str, int]:
    """The table's counts for this processor, with ``unclaimed``: open batches no processor claims."""
    return {**BATCH_ROWS.stats(ctx), "unclaimed": sum(unclaimed(ctx).values())}


def staging_pipeline(name: str, vendor: str, description: str, max_items: int) -> Pipeline[StagingSettings]:
    """One registration of the handler: same functions, its own name, vendor and settings section."""
    return Pipeline(
        name=name,
        purpose=Purpose.INGESTION,
        config=StagingSettings,
        defaults={"max_items": max_items},
        table=BATCH_ROWS,
        fetch=fetch,
        stats=stats,
        process=process,
        description=description,
        params={"vendor": vendor},
    )


#: Vendor acme: 5 batches per cycle; vendor globex: 10 (each overridable in its own section).
STAGING_ACME = register(staging_pipeline("staging_acme", "acme", "hand staging batches to vendor acme's scraper", 5))
STAGING_GLOBEX = register(
    staging_pipeline("staging_globex", "globex", "hand staging batches to vendor globex's scraper", 10)
)
