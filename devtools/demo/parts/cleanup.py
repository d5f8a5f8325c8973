"""Storage cleanup in the demo: stale objects under the prefix deleted, fresh ones and those beside
the prefix kept, on whichever store the demo runs (``--storage directory`` or ``s3``).

On a directory the stale objects' file times are set a day past the 24 h age. An object store sets
its own times, so with ``--storage s3`` the demo gives cleanup an age of a few seconds instead: the
stale objects are those written at seed time, the first discover is asked for once they are that
old (not at the clock's next minute, which made the demo wait up to two), and only the objects
beside the prefix are checked as kept (fresh ones under the prefix would be stale by then).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

from sqlalchemy import select

from backlane.db.models import ListedItem
from devtools.demo.part import DemoContext, DemoPart, Failure, Outcome, PartResult, Wait, next_tick_in
from devtools.demo.storage import demo_storage
from devtools.sample import create_stale_objects

PREFIX = "search-images/"
STALE, FRESH, OUTSIDE = 12, 4, 3
#: The age with --storage s3, seconds (S3's LastModified has whole seconds: a second more is waited).
S3_AGE_SECONDS = 2


def on_s3() -> bool:
    return os.environ.get("BACKLANE_STORAGE__KIND") == "s3"


class CleanupPart(DemoPart):
    """Stale objects listed from storage, each deleted on its own."""

    keys: dict[str, list[str]]
    #: When the objects were written (time.monotonic()).
    seeded_at: float = 0.0

    def environment(self, ctx: DemoContext) -> dict[str, str]:
        env = {"BACKLANE_CLEANUP__PREFIX": PREFIX}
        if on_s3():
            env.update(
                BACKLANE_CLEANUP__MAX_AGE_HOURS=f"{S3_AGE_SECONDS / 3600:.9f}", BACKLANE_CLEANUP__TICK="* * * * *"
            )
        return env

    def seed(self, ctx: DemoContext) -> str:
        fresh = 0 if on_s3() else FRESH
        self.keys = create_stale_objects(
            demo_storage(ctx.storage), PREFIX, STALE, fresh, timedelta(hours=24), outside=OUTSIDE
        )
        self.seeded_at = time.monotonic()
        age = f"{S3_AGE_SECONDS} s (S3 sets its own times)" if on_s3() else "24 h"
        return f"{STALE} stale objects under {PREFIX} (older than {age}), {fresh} fresh, {OUTSIDE} beside it"

    def first_discover(self) -> tuple[str, ...]:
        if on_s3():  # the processes took seconds to start: this seldom waits at all
            time.sleep(max(0.0, self.seeded_at + S3_AGE_SECONDS + 1 - time.monotonic()))
        return self.pipelines

    def left(self, ctx: DemoContext) -> tuple[int, int, int]:
        storage = demo_storage(ctx.storage)
        return tuple(sum(storage.exists(k) for k in self.keys[kind]) for kind in ("stale", "fresh", "outside"))  # type: ignore[return-value]

    def look(self, ctx: DemoContext) -> PartResult:
        stale, _fresh, _outside = self.left(ctx)
        line = f"{STALE - stale:>2}/{STALE} stale objects deleted"
        waits = (
            (Wait("cleanup", f"stale objects wait for the next cleanup tick in {next_tick_in()} s"),) if stale else ()
        )
        return PartResult((line,), stale == 0, waits)

    def outcome(self, ctx: DemoContext) -> Outcome:
        stale, fresh, outside = self.left(ctx)
        fresh_total = len(self.keys["fresh"])
        line = (
            f"{STALE - stale} stale objects deleted under {PREFIX}; {fresh}/{fresh_total} fresh and "
            f"{outside}/{OUTSIDE} beside the prefix kept"
        )
        problems = []
        if stale:
            problems.append(f"{stale} stale objects left")
        if fresh != fresh_total or outside != OUTSIDE:
            problems.append("cleanup deleted objects it must keep")
        return Outcome((line,), tuple(problems))

    def failures(self, ctx: DemoContext) -> list[Failure]:
        """Keys that failed for good, with their reasons (kept in listed_items, see backlane.core.listed)."""
        queue = self.queue(self.pipelines[0])
        with ctx.db.transaction() as session:
            rows = session.execute(
                select(ListedItem.item, ListedItem.failed_reason).where(
                    ListedItem.pipeline.in_(self.pipelines), ListedItem.failed_reason.is_not(None)
                )
            ).all()
        return [Failure(queue, item, reason) for item, reason in rows]


PART = CleanupPart
