"""Tracks on both storage backends: a real directory and the session's S3-speaking server, with real
RabbitMQ, a real worker and both databases. The S3 side: a missing object counts as deleted, a wrong
secret fails the track for good with S3's reason, a throttling server is retried until it lets us."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from actors.tracks.models import TrackStatus
from backlane.clients.storage import Storage, storage_from_settings
from backlane.core.discovery import discover
from backlane.core.registry import REGISTRY
from devtools.infra.s3 import S3Target
from tests.integration.conftest import App
from tests.integration.test_tracks_pipeline import add_track, tracks
from tests.waiting import wait_until


@pytest.fixture(params=["directory", "s3"])
def store(request: pytest.FixtureRequest, app: App, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "directory":
        app.configure("storage", kind="directory", root=str(tmp_path / "storage"))
    else:
        target: S3Target = request.getfixturevalue("s3")
        app.configure("storage", **target.settings(request.getfixturevalue("s3_bucket")))
    yield storage_from_settings(app.runtime.settings.storage)


@pytest.fixture
def s3_store(app: App, s3: S3Target, s3_bucket: str) -> Storage:
    app.configure("storage", **s3.settings(s3_bucket))
    return storage_from_settings(app.runtime.settings.storage)


def test_due_tracks_lose_their_objects_on_both_backends(app: App, store: Storage, worker: Any) -> None:
    due = [
        add_track(app, store, "both"),  # type: ignore[arg-type]
        add_track(app, store, "waveform-already-gone", waveform=False),  # type: ignore[arg-type]
        add_track(app, store, "nothing-stored", waveform=False, audio_stored=False),  # type: ignore[arg-type]
    ]
    active = add_track(app, store, "active", status=TrackStatus.ACTIVE.value)  # type: ignore[arg-type]

    assert discover(REGISTRY.get("tracks")).enqueued == len(due)

    wait_until(lambda: set(tracks(app)) == {active}, timeout=30, what="due tracks deleted")
    assert not store.exists("audio/both.mp3") and not store.exists("waveforms/both.json")
    assert store.exists("audio/active.mp3") and store.exists("waveforms/active.json")


def test_a_wrong_secret_fails_the_track_with_the_reason(
    app: App, s3: S3Target, s3_bucket: str, s3_store: Storage, worker: Any
) -> None:
    track = add_track(app, s3_store, "denied")  # type: ignore[arg-type]
    app.configure("storage", secret_access_key=SecretStr("not-the-secret"))

    discover(REGISTRY.get("tracks"))

    wait_until(lambda: tracks(app)[track].status == "deletion_failed", timeout=30, what="the track failed")
    reason = tracks(app)[track].failure_reason or ""
    assert "SignatureDoesNotMatch" in reason and "BACKLANE_STORAGE__SECRET_ACCESS_KEY" in reason, reason
    assert "not-the-secret" not in reason
    assert s3_store.exists("audio/denied.mp3"), "nothing deleted"


@pytest.mark.parametrize("retry_after", [None, 1.0])
def test_a_throttling_server_is_retried_until_the_track_is_deleted(
    app: App, s3: S3Target, s3_store: Storage, worker: Any, retry_after: float | None
) -> None:
    track = add_track(app, s3_store, "busy")  # type: ignore[arg-type]
    s3.throttle(2, match="audio/busy.mp3", retry_after=retry_after)

    discover(REGISTRY.get("tracks"))

    wait_until(lambda: track not in tracks(app), timeout=30, what="the track deleted after the throttling")
    assert s3.throttled() == 2
    assert not s3_store.exists("audio/busy.mp3") and not s3_store.exists("waveforms/busy.json")
