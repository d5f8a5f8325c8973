"""Tracks: physically delete soft-deleted tracks once their scheduled deletion time has come.

Replaces the physical-deletion service (every 5 minutes, 50 tracks at a time).
Per track: delete the audio object and the waveform object (if any) from
storage, then the row. An object already gone counts as deleted, so a second
delivery of the same message, or a crash between the two deletions, is
harmless. Each track is its own message: one that fails (a permission error, a
broken key) is retried on its own and never holds up the others.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, delete

from actors.tracks.models import TRACKS_DUE, Track, TrackStatus
from actors.tracks.settings import TracksSettings
from backlane import Context, ItemTable, Pipeline, Purpose, register, row_id
from backlane.clients.storage import storage_from_settings
from backlane.db.models import PipelineTally
from backlane.db.models.tallies import add_done

#: Deleted tracks whose scheduled deletion time has come, longest overdue first. A deleted
#: track's row is gone, so none counts as done; one whose deletion failed is left for a person.
TRACK_ROWS = ItemTable(
    Track,
    due=TRACKS_DUE,
    ready=lambda now: Track.delete_after <= now,
    order_by=(Track.delete_after, Track.id),
    failed=Track.status == TrackStatus.DELETION_FAILED.value,
    fail=lambda reason, _now: {"status": TrackStatus.DELETION_FAILED.value, "failure_reason": reason},
    reason=Track.failure_reason,
)


def process(ctx: Context[TracksSettings], item: Any) -> None:
    track_id = row_id(item, "track")
    track = TRACK_ROWS.load(ctx, track_id)
    if track is None:
        ctx.log.info("track %s is already gone; nothing to do", track_id)
        return
    if not track.has_work:
        ctx.log.info("track %s is %s and not due for deletion; left alone", track_id, track.status)
        return
    storage = storage_from_settings(ctx.settings.storage)
    errors: list[Exception] = []
    for key in (track.audio_key, track.waveform_key):
        try:  # one object failing never keeps the other: each deletion is tried every time
            if key and not storage.delete(key):
                ctx.log.info("track %s: object %r was already gone", track_id, key)
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
    with ctx.db.transaction() as session:
        # Only while still deleted: a track restored meanwhile keeps its row (its objects are gone,
        # which a restore after the scheduled deletion time has to accept).
        deleted = session.execute(delete(Track).where(TRACK_ROWS.row(ctx, track_id)))
        if cast("CursorResult[Any]", deleted).rowcount:
            add_done(session, ctx.pipeline.name, ctx.clock.now())


def stats(ctx: Context[TracksSettings]) -> dict[str, int]:
    """The table's counts, with ``done``: the tracks deleted (their rows are gone)."""
    counts = TRACK_ROWS.stats(ctx)
    with ctx.db.transaction() as session:
        tally = session.get(PipelineTally, ctx.pipeline.name)
    return {**counts, "done": tally.done if tally is not None else 0}


TRACKS = register(
    Pipeline(
        name="tracks",
        purpose=Purpose.INTERNAL,
        config=TracksSettings,
        table=TRACK_ROWS,
        process=process,
        stats=stats,
        description="physically delete deleted tracks and their stored objects once due",
    )
)
