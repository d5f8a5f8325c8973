"""Tracks: physically delete soft-deleted tracks once their scheduled deletion time has come.

Replaces the physical-deletion service (every 5 minutes, 50 tracks at a time).
Per track: delete the audio object and the waveform object (if any) from
storage, then the row. An object already gone counts as deleted, so a second
delivery of the same message, or a crash between the two deletions, is
harmless. Each track is its own message: one that fails (a permission error, a
broken key) is retried on its own and never holds up the others.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field
from sqlalchemy import and_, delete, false, update

from backlane.clients.storage import storage_from_settings
from backlane.core.clock import as_utc
from backlane.core.items import row_id
from backlane.core.pipeline import Context, Pipeline, Purpose
from backlane.core.registry import register
from backlane.db.claims import TRACKS_DUE, claim_due_tracks, status_counts
from backlane.db.models import Track, TrackStatus
from backlane.settings import PipelineSettings


class TracksSettings(PipelineSettings):
    #: Every 5 minutes, as the physical-deletion service did.
    tick: str = "*/5 * * * *"
    #: At most 50 tracks per tick, as before.
    max_items: int = Field(default=50, ge=1)
    #: A claimed track is not claimed again before this many seconds (its lease).
    lease_seconds: float = Field(default=600.0, gt=0)


def fetch(ctx: Context, limit: int) -> list[int]:
    config: TracksSettings = ctx.config
    with ctx.db.transaction() as session:
        return claim_due_tracks(
            session, now=ctx.clock.now(), limit=limit, lease=timedelta(seconds=config.lease_seconds)
        )


def process(ctx: Context, item: Any) -> None:
    track_id = row_id(item, "track")
    now = ctx.clock.now()
    with ctx.db.transaction() as session:
        track = session.get(Track, track_id)
    if track is None:
        ctx.log.info("track %s is already gone; nothing to do", track_id)
        return
    if track.status != TrackStatus.DELETED or track.delete_after is None or as_utc(track.delete_after) > now:
        ctx.log.info("track %s is %s and not due for deletion; left alone", track_id, track.status)
        return
    storage = storage_from_settings(ctx.settings.storage)
    for key in (track.audio_key, track.waveform_key):
        if key and not storage.delete(key):
            ctx.log.info("track %s: object %r was already gone", track_id, key)
    with ctx.db.transaction() as session:
        # Only while still deleted: a track restored meanwhile keeps its row (its objects are gone,
        # which a restore after the scheduled deletion time has to accept).
        session.execute(delete(Track).where(Track.id == track_id, TRACKS_DUE))


def on_failure(ctx: Context, item: Any, reason: str) -> None:
    if isinstance(item, int):
        with ctx.db.transaction() as session:
            session.execute(
                update(Track)
                .where(Track.id == item, TRACKS_DUE)
                .values(status=TrackStatus.DELETION_FAILED.value, failure_reason=reason, updated_at=ctx.clock.now())
            )


def stats(ctx: Context) -> dict[str, int]:
    now = ctx.clock.now()
    with ctx.db.transaction() as session:
        return status_counts(
            session,
            Track,
            due=and_(TRACKS_DUE, Track.delete_after <= now),
            now=now,
            done=false(),  # a deleted track's row is gone
            failed=Track.status == TrackStatus.DELETION_FAILED.value,
        )


TRACKS = register(
    Pipeline(
        name="tracks",
        purpose=Purpose.INTERNAL,
        config=TracksSettings,
        fetch=fetch,
        process=process,
        on_failure=on_failure,
        stats=stats,
        description="physically delete deleted tracks and their stored objects once due",
    )
)
