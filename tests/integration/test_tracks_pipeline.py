"""Tracks end to end: real storage directory, real RabbitMQ, real database (both backends)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from actors.tracks.models import Track, TrackStatus
from backlane.clients.storage import DirectoryStorage
from backlane.core.discovery import discover
from backlane.core.registry import REGISTRY
from tests.integration.conftest import App
from tests.waiting import wait_until


@pytest.fixture
def storage(app: App, tmp_path: Path) -> Iterator[DirectoryStorage]:
    root = tmp_path / "storage"
    app.configure("storage", root=str(root))
    yield DirectoryStorage(root)


def add_track(
    app: App,
    storage: DirectoryStorage,
    name: str,
    *,
    status: str = TrackStatus.DELETED.value,
    delete_after: datetime | None = None,
    waveform: bool | None = True,
    audio_stored: bool = True,
) -> int:
    """A track with its audio (and, when ``waveform`` is True, its waveform) stored; ``waveform=False``
    names a waveform key whose object is missing, ``None`` has no waveform at all."""
    now = app.clock.now()
    audio_key, waveform_key = f"audio/{name}.mp3", f"waveforms/{name}.json" if waveform is not None else None
    if audio_stored:
        storage.put(audio_key, b"audio " + name.encode())
    if waveform and waveform_key:
        storage.put(waveform_key, b"[0.1, 0.5]")
    with app.db.transaction() as session:
        return session.execute(
            insert(Track).returning(Track.id),
            {
                "title": name,
                "status": status,
                "audio_key": audio_key,
                "waveform_key": waveform_key,
                "delete_after": delete_after if delete_after is not None else now - timedelta(minutes=1),
                "created_at": now - timedelta(days=30),
                "updated_at": now,
            },
        ).scalar_one()


def tracks(app: App) -> dict[int, Track]:
    with app.db.transaction() as session:
        return {track.id: track for track in session.scalars(select(Track))}


def test_due_tracks_disappear_with_their_objects_and_others_stay(
    app: App, storage: DirectoryStorage, worker: Any
) -> None:
    now = app.clock.now()
    due = [
        add_track(app, storage, "both"),
        add_track(app, storage, "no-waveform", waveform=None),
        add_track(app, storage, "waveform-already-gone", waveform=False),
        add_track(app, storage, "nothing-stored", waveform=False, audio_stored=False),
        add_track(app, storage, "exactly-due", delete_after=now),
    ]
    not_due = add_track(app, storage, "later", delete_after=now + timedelta(minutes=5))
    active = add_track(app, storage, "active", status=TrackStatus.ACTIVE.value)

    result = discover(REGISTRY.get("tracks"))

    assert result.enqueued == len(due)
    wait_until(lambda: set(tracks(app)) == {not_due, active}, timeout=30, what="due tracks deleted")
    for name in ("both", "no-waveform", "waveform-already-gone", "nothing-stored", "exactly-due"):
        assert not storage.exists(f"audio/{name}.mp3")
        assert not storage.exists(f"waveforms/{name}.json")
    for name in ("later", "active"):
        assert storage.exists(f"audio/{name}.mp3") and storage.exists(f"waveforms/{name}.json")
    left = tracks(app)
    assert left[not_due].status == "deleted" and left[active].status == "active"


def test_a_failing_track_is_retried_alone_and_never_stops_the_others(
    app: App, storage: DirectoryStorage, worker: Any, tmp_path: Path
) -> None:
    app.configure("tracks", max_retries=2)
    outside = tmp_path / "outside.mp3"
    outside.write_bytes(b"not ours")
    good = [add_track(app, storage, f"good-{i}") for i in range(10)]
    # Its "audio object" is a directory: unlinking it fails every time (transient, retried).
    stuck = add_track(app, storage, "stuck", audio_stored=False)
    storage.put("audio/stuck.mp3/inner", b"x")
    # A key that escapes the storage root: permanent, never retried, the outside file untouched.
    with app.db.transaction() as session:
        escaping = session.execute(
            insert(Track).returning(Track.id),
            {
                "title": "escaping",
                "status": "deleted",
                "audio_key": "../outside.mp3",
                "delete_after": app.clock.now() - timedelta(hours=1),
                "created_at": app.clock.now(),
                "updated_at": app.clock.now(),
            },
        ).scalar_one()

    discover(REGISTRY.get("tracks"))

    wait_until(lambda: set(tracks(app)) == {stuck, escaping}, timeout=30, what="good tracks deleted")
    wait_until(
        lambda: {t.status for t in tracks(app).values()} == {"deletion_failed"}, timeout=30, what="failures recorded"
    )
    left = tracks(app)
    assert (left[stuck].failure_reason or "").startswith("gave up after 3 attempts: IsADirectoryError")
    assert "escapes the storage root" in (left[escaping].failure_reason or "")
    assert outside.read_bytes() == b"not ours"
    assert all(not storage.exists(f"audio/good-{i}.mp3") for i in range(len(good)))
    # Settled for good: the next tick does not pick them up again.
    app.clock.advance(seconds=app.config("tracks").lease_seconds + 1)
    assert discover(REGISTRY.get("tracks")).enqueued == 0
    tracks_pipeline = REGISTRY.get("tracks")
    assert tracks_pipeline.pipeline.stats is not None
    assert tracks_pipeline.pipeline.stats(tracks_pipeline.context())["failed"] == 2


def test_at_most_max_items_per_tick_and_claimed_tracks_are_not_enqueued_twice(
    app: App, storage: DirectoryStorage
) -> None:
    for i in range(60):
        add_track(app, storage, f"t{i}", waveform=None)
    pipeline = REGISTRY.get("tracks")

    first, second = discover(pipeline), discover(pipeline)
    app.clock.advance(seconds=app.config("tracks").lease_seconds + 1)
    after_lease = discover(pipeline)

    assert app.config("tracks").max_items == 50
    assert (first.enqueued, second.enqueued, after_lease.enqueued) == (50, 10, 50)


def test_disabled_pipeline_does_nothing(app: App, storage: DirectoryStorage) -> None:
    track = add_track(app, storage, "kept")
    app.configure("tracks", enabled=False)

    assert discover(REGISTRY.get("tracks")).enqueued == 0
    assert set(tracks(app)) == {track} and storage.exists("audio/kept.mp3")
