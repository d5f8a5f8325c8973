"""Staging in the demo: batches handed to each registered vendor's scraper, each registration
within its own per-tick limit (so each needs two ticks), and one batch the first vendor rejects
failing for good, with its reason. One part for every registration of the staging handler.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import select

from actors.staging.models import StagingBatch  # this pipeline's model: imported here only
from backlane.core.clock import as_utc
from devtools.demo.part import (
    DemoContext,
    DemoPart,
    Failure,
    Outcome,
    PartResult,
    SimulatorUse,
    Wait,
    next_tick_in,
    now,
)
from devtools.sample import create_staging_batches

#: The simulator standing in for the vendors' scrapers (and the demo's other sources).
SIMULATOR = "sources"
#: Batches per registration, as a share of its tick limit beyond the limit itself: each needs two ticks.
SECOND_TICK = 0.5
#: Batches with no URLs, which the first registration's vendor rejects (422).
REJECTED = 1


class StagingPart(DemoPart):
    """Staging batches for each registration (a vendor) of the staging handler."""

    def __init__(self, name: str, registered: Any) -> None:
        super().__init__(name, registered)
        #: Each registration's batches per tick (its ``max_items`` default), batches and rejected ones.
        self.limits = {r.name: int(r.pipeline.defaults.get("max_items", 10)) for r in self.registered}
        self.batches = {n: limit + math.ceil(limit * SECOND_TICK) for n, limit in self.limits.items()}
        self.rejected = {n: REJECTED if i == 0 else 0 for i, n in enumerate(self.pipelines)}

    def vendor(self, pipeline: str) -> str:
        return str(next(r.pipeline.params.get("vendor", r.name) for r in self.registered if r.name == pipeline))

    def total(self, pipeline: str) -> int:
        return self.batches[pipeline] + self.rejected[pipeline]

    def simulator(self) -> SimulatorUse:
        return SimulatorUse(SIMULATOR, (), "the vendor scrapers")

    def environment(self, ctx: DemoContext) -> dict[str, str]:
        return {f"BACKLANE_{name.upper()}__BASE_URL": ctx.simulator_url(SIMULATOR) for name in self.pipelines}

    def seed(self, ctx: DemoContext) -> str:
        create_staging_batches(ctx.db, ctx.now, self.batches, rejected=self.rejected)
        each = ", ".join(f"{self.total(n)} for {self.vendor(n)}" for n in self.pipelines)
        return f"staging batches: {each} (one rejected by its vendor)"

    def look(self, ctx: DemoContext) -> PartResult:
        at = now()
        counts: dict[str, Counter[str]] = {name: Counter() for name in self.pipelines}
        in_flight: Counter[str] = Counter()
        with ctx.db.transaction() as session:
            for processor, status, lease in session.execute(
                select(StagingBatch.processor, StagingBatch.status, StagingBatch.lease_until).where(
                    StagingBatch.processor.in_(self.pipelines)
                )
            ):
                counts[processor][status] += 1
                in_flight[processor] += lease is not None and as_utc(lease) > at
        line = "   ".join(
            f"{self.vendor(n)} {c.get('completed', 0)}/{self.total(n)} completed"
            + (f", {c['failed']} failed" if c.get("failed") else "")
            for n, c in counts.items()
        )
        waits = []
        for name, c in counts.items():
            left, started = c.get("pending", 0), sum(k for status, k in c.items() if status != "pending")
            if left and started and not in_flight[name]:
                text = (
                    f"{left} {name} batches wait for the next tick in {next_tick_in()} s ({self.limits[name]} per tick)"
                )
                waits.append(Wait(name, text))
        settled = all(c.get("completed", 0) + c.get("failed", 0) >= self.total(n) for n, c in counts.items())
        return PartResult((line,), settled, tuple(waits))

    def outcome(self, ctx: DemoContext) -> Outcome:
        vendors = httpx.get(f"{ctx.simulator_url(SIMULATOR)}/_admin/stats", timeout=5).json().get("vendors", {})
        with ctx.db.transaction() as session:
            rows = session.execute(
                select(StagingBatch.processor, StagingBatch.status).where(StagingBatch.processor.in_(self.pipelines))
            ).all()
        counts = {name: Counter(status for processor, status in rows if processor == name) for name in self.pipelines}
        said, problems = [], []
        for name, c in counts.items():
            vendor = self.vendor(name)
            stats = vendors.get(vendor, {})
            said.append(
                f"{vendor} {c.get('completed', 0)} completed, {c.get('failed', 0)} failed "
                f"(scraped {stats.get('scraped', 0)} batches, {stats.get('replays', 0)} twice)"
            )
            if stats.get("replays"):
                problems.append(f"vendor {vendor} scraped a batch twice")
        return Outcome(("; ".join(said),), tuple(problems))

    def failures(self, ctx: DemoContext) -> list[Failure]:
        with ctx.db.transaction() as session:
            rows = session.execute(
                select(StagingBatch.id, StagingBatch.processor, StagingBatch.reason).where(
                    StagingBatch.status == "failed", StagingBatch.processor.in_(self.pipelines)
                )
            ).all()
        return [Failure(self.queue(processor), f"batch {batch_id}", reason) for batch_id, processor, reason in rows]

    def on_purpose(self) -> str:
        return "the rejected batch" if any(self.rejected.values()) else ""


PART = StagingPart
