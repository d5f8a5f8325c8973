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

from datetime import timedelta
from typing import Any

from pydantic import Field
from sqlalchemy import and_, update

from backlane.clients.vendor_api import VendorScraperClient
from backlane.core.items import row_id
from backlane.core.pipeline import Context, Pipeline, Purpose
from backlane.core.registry import register
from backlane.db.claims import STAGING_DUE, claim_staging_batches, status_counts
from backlane.db.models import StagingBatch, StagingStatus
from backlane.errors import PermanentError, UnknownItem
from backlane.settings import PipelineSettings


class StagingSettings(PipelineSettings):
    """One registration of the staging-batch handler (one vendor); each has its own section."""

    #: Base URL of the vendor's scraper API (the simulator in demo and tests).
    base_url: str = "http://127.0.0.1:8085"
    #: Per-request timeout, seconds.
    timeout: float = Field(default=30.0, gt=0)
    #: A claimed batch is not claimed again before this many seconds (its lease).
    lease_seconds: float = Field(default=600.0, gt=0)


#: Batches in these states are settled; a repeated message does nothing.
SETTLED = (StagingStatus.COMPLETED.value, StagingStatus.FAILED.value)


def fetch(ctx: Context, limit: int) -> list[int]:
    config: StagingSettings = ctx.config
    with ctx.db.transaction() as session:
        return claim_staging_batches(
            session,
            processor=ctx.pipeline.name,
            now=ctx.clock.now(),
            limit=limit,
            lease=timedelta(seconds=config.lease_seconds),
        )


def process(ctx: Context, item: Any) -> None:
    batch_id = row_id(item, "staging batch")
    with ctx.db.transaction() as session:
        batch = session.get(StagingBatch, batch_id)
    if batch is None:
        raise UnknownItem(f"staging batch {batch_id} does not exist")
    if batch.processor != ctx.pipeline.name:
        raise PermanentError(f"staging batch {batch_id} waits for {batch.processor!r}, not {ctx.pipeline.name!r}")
    if batch.status in SETTLED:
        ctx.log.info("staging batch %s is already %s; nothing to do", batch_id, batch.status)
        return
    config: StagingSettings = ctx.config
    vendor = ctx.pipeline.params["vendor"]
    client = VendorScraperClient(config.base_url, timeout=config.timeout)
    records = client.scrape(vendor, f"{ctx.pipeline.name}-{batch_id}", batch.payload)
    _settle(ctx, batch_id, StagingStatus.COMPLETED, f"vendor {vendor} scraped {records} record(s)")


def on_failure(ctx: Context, item: Any, reason: str) -> None:
    if isinstance(item, int):
        _settle(ctx, item, StagingStatus.FAILED, reason)


def _settle(ctx: Context, batch_id: int, status: StagingStatus, reason: str) -> None:
    """Settle an open batch of this processor; settled or foreign batches are never touched."""
    now = ctx.clock.now()
    with ctx.db.transaction() as session:
        session.execute(
            update(StagingBatch)
            .where(StagingBatch.id == batch_id, StagingBatch.processor == ctx.pipeline.name, STAGING_DUE)
            .values(status=status.value, reason=reason, finished_at=now, updated_at=now, lease_until=None)
        )


def stats(ctx: Context) -> dict[str, int]:
    mine = StagingBatch.processor == ctx.pipeline.name
    with ctx.db.transaction() as session:
        return status_counts(
            session,
            StagingBatch,
            due=and_(STAGING_DUE, mine),
            now=ctx.clock.now(),
            done=and_(mine, StagingBatch.status == StagingStatus.COMPLETED.value),
            failed=and_(mine, StagingBatch.status == StagingStatus.FAILED.value),
        )


def staging_pipeline(name: str, vendor: str, description: str, max_items: int) -> Pipeline:
    """One registration of the handler: same functions, its own name, vendor and settings section."""
    return Pipeline(
        name=name,
        purpose=Purpose.INGESTION,
        config=StagingSettings,
        defaults={"max_items": max_items},
        fetch=fetch,
        process=process,
        on_failure=on_failure,
        stats=stats,
        description=description,
        params={"vendor": vendor},
    )


#: Vendor acme: 5 batches per cycle; vendor globex: 10 (each overridable in its own section).
STAGING_ACME = register(staging_pipeline("staging_acme", "acme", "hand staging batches to vendor acme's scraper", 5))
STAGING_GLOBEX = register(
    staging_pipeline("staging_globex", "globex", "hand staging batches to vendor globex's scraper", 10)
)
