"""Tracks count what they deleted, and a failed track keeps neither its lease nor its other object.
Real worker, RabbitMQ, both databases and a storage directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from actors.tracks.models import Track
from backlane.clients.storage import DirectoryStorage
from backlane.core.discovery import discover
from backlane.core.registry import REGISTRY
from tests.integration.conftest import App
from tests.integration.test_tracks_pipeline import add_track
from tests.waiting import wait_until


@pytest.fixture
def storage(app: App, tmp_path: Path) -> DirectoryStorage:
    app.configure("storage", root=str(tmp_path / "storage"))
    return DirectoryStorage(tmp_path / "storage")


def _tracks(app: App) -> dict[int, Track]:
    with app.db.transaction() as session:
        return {t.id: t for t in session.scalars(select(Track))}


def test_deleted_tracks_are_counted_and_a_failed_one_is_released_with_its_other_object_gone(
    app: App, storage: DirectoryStorage, worker: Any
) -> None:
    app.configure("tracks", max_retries=0)
    good = [add_track(app, storage, f"good-{i}") for i in range(3)]
    stuck = add_track(app, storage, "stuck", audio_stored=False)
    storage.put("audio/stuck.mp3/inner", b"x")  # its audio "object" is a directory: unlinking fails
    assert storage.exists("waveforms/stuck.json")

    assert discover(REGISTRY.get("tracks")).enqueued == 4
    wait_until(lambda: set(_tracks(app)) == {stuck}, timeout=30, what="good tracks deleted")
    wait_until(lambda: _tracks(app)[stuck].status == "deletion_failed", timeout=30, what="failure recorded")

    failed = _tracks(app)[stuck]
    assert failed.lease_until is None, "a failed track's lease is released"
    assert not storage.exists("waveforms/stuck.json"), "its other object is deleted all the same"
    tracks = REGISTRY.get("tracks")
    assert tracks.pipeline.stats is not None
    counts = tracks.pipeline.stats(tracks.context())
    assert (counts["done"], counts["failed"]) == (len(good), 1)
