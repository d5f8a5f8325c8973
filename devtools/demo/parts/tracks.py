"""Tracks in the demo: deleted tracks physically deleted with their stored objects, tracks not due
kept with theirs, and one with a key outside the storage directory failing for good, with its reason.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from actors.tracks.models import Track  # this pipeline's model: imported here only
from devtools.demo.part import DemoContext, DemoPart, Failure, Outcome, PartResult
from devtools.demo.storage import demo_storage
from devtools.sample import create_tracks

#: Tracks due for deletion, tracks kept (not due), tracks whose key is outside storage.
DUE, KEPT, BROKEN = 20, 5, 1


def objects(track: int) -> tuple[str, str]:
    """The keys of a sample track's stored objects (as :func:`devtools.sample.create_tracks` writes them)."""
    return f"audio/track-{track}.mp3", f"waveforms/track-{track}.json"


class TracksPart(DemoPart):
    """Soft-deleted tracks whose stored audio and waveform go with them."""

    def seed(self, ctx: DemoContext) -> str:
        create_tracks(ctx.db, demo_storage(ctx.storage), DUE, ctx.now, kept=KEPT, broken=BROKEN)
        return (
            f"{DUE} deleted tracks ({2 * DUE} stored objects) due for deletion, {BROKEN} with a key outside "
            f"storage, {KEPT} kept"
        )

    def counts(self, ctx: DemoContext) -> Counter[str]:
        with ctx.db.transaction() as session:
            return Counter(dict(session.execute(select(Track.status, func.count()).group_by(Track.status)).all()))  # type: ignore[arg-type]

    def look(self, ctx: DemoContext) -> PartResult:
        counts = self.counts(ctx)
        left, failed = counts.get("deleted", 0), counts.get("deletion_failed", 0)
        line = (
            f"{DUE + BROKEN - left - failed:>2}/{DUE + BROKEN} due tracks deleted with their objects, {failed} failed"
        )
        return PartResult((line,), left == 0)

    def outcome(self, ctx: DemoContext) -> Outcome:
        storage = demo_storage(ctx.storage)
        gone = [t for t in range(DUE) if not any(storage.exists(key) for key in objects(t))]
        kept_keys = [key for t in range(DUE, DUE + KEPT) for key in objects(t)]
        kept = [key for key in kept_keys if storage.exists(key)]
        counts = self.counts(ctx)
        line = (
            f"{len(gone)} deleted tracks removed with their {2 * len(gone)} stored objects; "
            f"{KEPT} tracks not due kept with their {len(kept)} objects; {counts.get('deletion_failed', 0)} failed"
        )
        problems = []
        if len(gone) != DUE or len(kept) != len(kept_keys):
            problems.append("track objects not as expected")
        if counts.get("deleted", 0):
            problems.append("tracks left undeleted")
        return Outcome((line,), tuple(problems))

    def failures(self, ctx: DemoContext) -> list[Failure]:
        queue = self.queue(self.pipelines[0])
        with ctx.db.transaction() as session:
            rows = session.execute(
                select(Track.id, Track.failure_reason).where(Track.status == "deletion_failed")
            ).all()
        return [Failure(queue, f"track {track_id}", reason) for track_id, reason in rows]

    def on_purpose(self) -> str:
        return "the broken track"


PART = TracksPart
