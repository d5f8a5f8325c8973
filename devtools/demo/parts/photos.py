"""Photos in the demo: product and delivery photos (small real PNGs in storage) vectorized through
the embeddings simulator, each registration within its own per-tick limit (so each needs two
ticks), one image the API refuses failing for good with its reason, and the photos most similar
to one photo of each registration shown in the summary. One part for both registrations.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import func, select

from actors.photos.models import Photo  # this pipeline's model and query: imported here only
from actors.photos.similar import most_similar
from devtools.demo.part import DemoContext, DemoPart, Failure, Outcome, PartResult, SimulatorUse, Wait, next_tick_in
from devtools.demo.storage import demo_storage
from devtools.sample import create_photos

#: The simulator standing in for the embeddings API (and the demo's other sources).
SIMULATOR = "sources"
#: Photos per registration beyond its tick limit, as a share of it: each needs two ticks.
SECOND_TICK = 0.5
#: Photos whose bytes are no image, which the API refuses (the first registration's).
REFUSED = 1
#: Neighbours shown per registration.
SHOWN = 3


class PhotosPart(DemoPart):
    """Photos for each registration of the image-vectorization handler."""

    def __init__(self, name: str, registered: Any) -> None:
        super().__init__(name, registered)
        self.limits = {r.name: int(r.pipeline.defaults.get("max_items", 10)) for r in self.registered}
        self.photos = {n: limit + math.ceil(limit * SECOND_TICK) for n, limit in self.limits.items()}
        self.refused = {n: REFUSED if i == 0 else 0 for i, n in enumerate(self.pipelines)}

    def total(self, pipeline: str) -> int:
        return self.photos[pipeline] + self.refused[pipeline]

    def simulator(self) -> SimulatorUse:
        return SimulatorUse(SIMULATOR, (), "the embeddings API")

    def environment(self, ctx: DemoContext) -> dict[str, str]:
        return {f"BACKLANE_{name.upper()}__BASE_URL": ctx.simulator_url(SIMULATOR) for name in self.pipelines}

    def seed(self, ctx: DemoContext) -> str:
        storage = demo_storage(ctx.storage)  # the store the workers read: S3 with --storage s3
        for name in self.pipelines:
            create_photos(ctx.db, storage, name, self.photos[name], ctx.now, refused=self.refused[name])
        each = ", ".join(f"{self.total(n)} {n}" for n in self.pipelines)
        return f"photos: {each} (one not an image)"

    def counts(self, ctx: DemoContext) -> dict[str, Counter[str]]:
        counts: dict[str, Counter[str]] = {name: Counter() for name in self.pipelines}
        with ctx.db.transaction() as session:
            rows = session.execute(
                select(Photo.owner, Photo.status, func.count())
                .where(Photo.owner.in_(self.pipelines))
                .group_by(Photo.owner, Photo.status)
            ).all()
        for owner, status, count in rows:
            counts[owner][status] = count
        return counts

    def look(self, ctx: DemoContext) -> PartResult:
        counts = self.counts(ctx)
        line = "   ".join(
            f"{n} {c.get('vectorized', 0)}/{self.total(n)} vectorized"
            + (f", {c['failed']} failed" if c.get("failed") else "")
            for n, c in counts.items()
        )
        waits = [
            Wait(n, f"{c['pending']} {n} wait for the next tick in {next_tick_in()} s ({self.limits[n]} per tick)")
            for n, c in counts.items()
            if c.get("pending") and (c.get("vectorized") or c.get("failed"))
        ]
        settled = all(c.get("vectorized", 0) + c.get("failed", 0) >= self.total(n) for n, c in counts.items())
        return PartResult((line,), settled, tuple(waits))

    def outcome(self, ctx: DemoContext) -> Outcome:
        stats = httpx.get(f"{ctx.simulator_url(SIMULATOR)}/_admin/stats", timeout=5).json().get("embeddings", {})
        counts = self.counts(ctx)
        lines = [
            "; ".join(
                f"{n} {c.get('vectorized', 0)} vectorized, {c.get('failed', 0)} failed" for n, c in counts.items()
            )
            + f" (the API served {stats.get('vectors', 0)} vectors for {stats.get('images', 0)} images)"
        ]
        problems = []
        if set(stats.get("served_per_image", {})) - {"1"}:
            problems.append("an image was vectorized twice")
        for name in self.pipelines:
            with ctx.db.transaction() as session:
                first = session.scalar(
                    select(func.min(Photo.id)).where(Photo.owner == name, Photo.status == "vectorized")
                )
            if first is None:
                problems.append(f"no {name} photo vectorized")
                continue
            near = most_similar(ctx.db, first, SHOWN + 1)
            shown = ", ".join(f"{n.photo_id} ({n.similarity:.3f})" for n in near[1:])
            lines.append(f"photos most similar to {name} photo {first} ({near[0].subject}): {shown}")
            if near[0].photo_id != first:
                problems.append(f"{name} photo {first} is not its own nearest neighbour")
        return Outcome(tuple(lines), tuple(problems))

    def failures(self, ctx: DemoContext) -> list[Failure]:
        with ctx.db.transaction() as session:
            rows = session.execute(
                select(Photo.id, Photo.owner, Photo.failure_reason).where(
                    Photo.status == "failed", Photo.owner.in_(self.pipelines)
                )
            ).all()
        return [Failure(self.queue(owner), f"photo {photo_id}", reason) for photo_id, owner, reason in rows]

    def on_purpose(self) -> str:
        return "the photo that is not an image" if any(self.refused.values()) else ""


PART = PhotosPart
