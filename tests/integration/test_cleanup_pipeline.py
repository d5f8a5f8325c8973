"""Storage cleanup end to end: real RabbitMQ, a real database (SQLite and PostgreSQL), a real worker,
and both storage backends (a directory and the session's S3-speaking server). Time is the injected
clock: objects are written in two batches a second apart and the clock is set so the cut-off falls
between them."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dramatiq
import pytest

from actors.cleanup import STALE_OBJECTS
from backlane.app import App as LoadedApp
from backlane.clients.s3 import S3Unavailable
from backlane.clients.storage import DirectoryStorage, Storage, storage_from_settings
from backlane.core.discovery import discover
from backlane.core.registry import REGISTRY
from backlane.operations.dashboard import create_app
from backlane.settings import DashboardSettings
from devtools.infra.s3 import S3Target
from tests.integration.conftest import App
from tests.waiting import wait_until

with warnings.catch_warnings():  # Starlette >= 1.x would rather have httpx2; httpx is what backlane uses
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PREFIX = "search-images/"


def dashboard(app: App, **settings: Any) -> TestClient:
    """The dashboard's app in process, over this test's broker and database."""
    return TestClient(
        create_app(LoadedApp(REGISTRY, app.runtime), DashboardSettings(refresh_seconds=0, **settings)),
        follow_redirects=False,
        base_url="http://127.0.0.1",
    )


@pytest.fixture(params=["directory", "s3"])
def store(request: pytest.FixtureRequest, app: App, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "directory":
        app.configure("storage", kind="directory", root=str(tmp_path / "objects"))
    else:
        target: S3Target = request.getfixturevalue("s3")
        app.configure("storage", **target.settings(request.getfixturevalue("s3_bucket")))
    yield storage_from_settings(app.runtime.settings.storage)


def spread(app: App, store: Storage, old: list[str], young: list[str]) -> None:
    """``old`` written, then ``young`` a second later; the clock set so the cut-off (now minus the
    age) falls between the two batches' last-modified times."""
    for key in old:
        store.put(key, b"old " + key.encode())
    time.sleep(1.1)  # S3's LastModified has whole seconds
    for key in young:
        store.put(key, b"young " + key.encode())
    times = {o.key: o.last_modified for o in store.list("", None, 10_000)}
    newest_old = max(times[k] for k in old)
    assert min(times[k] for k in young) > newest_old
    age = timedelta(hours=app.config("cleanup").max_age_hours)
    app.clock.set(newest_old + age + timedelta(milliseconds=500))


def present(store: Storage, keys: list[str]) -> set[str]:
    return {k for k in keys if store.exists(k)}


def cleanup_stats() -> dict[str, int]:
    registered = REGISTRY.get("cleanup")
    return registered.pipeline.stats(registered.context())


def test_deletes_exactly_the_objects_older_than_the_cut_off(
    app: App, store: Storage, request: pytest.FixtureRequest
) -> None:
    old = [f"{PREFIX}old-{i}.jpg" for i in range(6)]
    young = [f"{PREFIX}young-{i}.jpg" for i in range(4)]
    elsewhere = [f"tracks/audio-{i}.mp3" for i in range(2)]
    spread(app, store, old + elsewhere, young)
    app.configure("cleanup", max_items=4)
    cleanup = REGISTRY.get("cleanup")

    first = discover(cleanup)
    second = discover(cleanup)  # the first tick's four are in flight: not offered again

    assert (first.enqueued, second.enqueued) == (4, 2)
    request.getfixturevalue("worker")
    wait_until(lambda: not present(store, old), timeout=30, what="stale objects deleted")
    assert present(store, young) == set(young), "no object younger than the cut-off is touched"
    assert present(store, elsewhere) == set(elsewhere), "nothing outside the prefix is touched"
    wait_until(lambda: cleanup_stats()["done"] == 6, timeout=10, what="six counted done")
    assert cleanup_stats() == {"in_flight": 0, "done": 6, "failed": 0}
    assert discover(cleanup).enqueued == 0

    app.clock.advance(seconds=2)  # now the young batch is past the age too
    assert discover(cleanup).enqueued == 4
    wait_until(lambda: not present(store, young), timeout=30, what="the second batch deleted")
    assert present(store, elsewhere) == set(elsewhere)


def test_an_object_already_gone_and_a_second_worker_are_successes(
    app: App, store: Storage, request: pytest.FixtureRequest
) -> None:
    old = [f"{PREFIX}o-{i}.jpg" for i in range(5)]
    spread(app, store, old, [f"{PREFIX}young.jpg"])
    cleanup = REGISTRY.get("cleanup")
    app.configure("cleanup", lease_seconds=0.2)
    assert discover(cleanup).enqueued == 5
    app.clock.advance(seconds=0.3)  # past the lease, not yet past the young object's age
    assert discover(cleanup).enqueued == 5, "a second clock after the lease: every object sent twice"
    store.delete(old[0])  # someone else deleted it meanwhile

    request.getfixturevalue("worker")
    second = dramatiq.Worker(app.broker, worker_threads=4, worker_timeout=100)
    second.start()
    try:
        wait_until(lambda: cleanup_stats()["done"] >= 4, timeout=30, what="four deleted")
        wait_until(lambda: app.queue_counts("cleanup") == (0, 0, 0), timeout=30, what="queue drained")
    finally:
        second.stop(timeout=10_000)
        app.broker.middleware[:] = [m for m in app.broker.middleware if getattr(m, "worker", None) is not second]
    assert not present(store, old) and store.exists(f"{PREFIX}young.jpg")
    # Ten messages, no failure; done counts the objects this pipeline deleted. (On S3 two racing
    # messages may both see the object before either deletes it: DeleteObject cannot tell.)
    stats = cleanup_stats()
    assert stats["in_flight"] == 0 and stats["failed"] == 0
    assert stats["done"] == 4 if isinstance(store, DirectoryStorage) else 4 <= stats["done"] <= 8


def test_a_failing_listing_is_retried_at_the_next_tick(app: App, s3: S3Target, s3_bucket: str) -> None:
    app.configure("storage", **s3.settings(s3_bucket))
    store = storage_from_settings(app.runtime.settings.storage)
    spread(app, store, [f"{PREFIX}a.jpg", f"{PREFIX}b.jpg"], [f"{PREFIX}c.jpg"])
    cleanup = REGISTRY.get("cleanup")
    assert cleanup.discover_actor is not None

    s3.throttle(1, match=s3_bucket)
    with pytest.raises(S3Unavailable, match="SlowDown"):
        discover(cleanup)
    s3.throttle(1, match=s3_bucket)
    assert cleanup.discover_actor.fn() is None, "the tick's actor logs the failure and does not raise"
    app.configure("storage", endpoint_url="http://127.0.0.1:9", connect_timeout=0.3)
    assert cleanup.discover_actor.fn() is None
    assert cleanup_stats()["in_flight"] == 0, "a failed listing claims nothing"

    app.configure("storage", **s3.settings(s3_bucket))
    assert discover(cleanup).enqueued == 2


def test_an_object_refused_for_good_keeps_its_reason_and_is_not_offered_again(
    app: App, s3: S3Target, s3_bucket: str, worker: Any
) -> None:
    if s3.reader is None:
        pytest.fail("this test needs the bundled S3 server's read-only user (unset BACKLANE_TEST_S3_URL)")
    app.configure("storage", **s3.settings(s3_bucket))
    store = storage_from_settings(app.runtime.settings.storage)
    spread(app, store, [f"{PREFIX}denied.jpg"], [f"{PREFIX}young.jpg"])
    app.configure("storage", **s3.settings(s3_bucket, s3.reader))  # may list and read, not delete
    cleanup = REGISTRY.get("cleanup")

    assert discover(cleanup).enqueued == 1
    wait_until(lambda: cleanup_stats()["failed"] == 1, timeout=30, what="the refusal recorded")
    [failure] = STALE_OBJECTS.failures(cleanup.context())
    assert failure["item"] == f"{PREFIX}denied.jpg" and "AccessDenied" in failure["reason"]
    assert store.exists(f"{PREFIX}denied.jpg")
    app.configure("cleanup", lease_seconds=0.2)
    app.clock.advance(seconds=0.3)  # past any lease, not yet past the young object's age
    assert discover(cleanup).enqueued == 0, "failed for good: not listed again until requeued"
    STALE_OBJECTS.reopen(cleanup.context(), f"{PREFIX}denied.jpg")
    assert discover(cleanup).enqueued == 1


def test_a_forged_message_outside_the_prefix_deletes_nothing(app: App, store: Storage, worker: Any) -> None:
    store.put("tracks/keep.mp3", b"keep")
    cleanup = REGISTRY.get("cleanup")
    for item in ("tracks/keep.mp3", "../etc/passwd", 42, ""):
        cleanup.process_actor.send(item)

    def reasons() -> list[str]:
        return [f["reason"] for f in STALE_OBJECTS.failures(cleanup.context())]

    wait_until(lambda: len(reasons()) == 2, timeout=30, what="both keys failed for good")
    assert store.exists("tracks/keep.mp3")
    assert any("not under BACKLANE_CLEANUP__PREFIX" in r for r in reasons()), reasons()
    assert any("escapes the storage root" in r for r in reasons()), reasons()


def test_the_dashboard_page_lists_an_object_that_failed_for_good_with_its_reason(
    app: App, s3: S3Target, s3_bucket: str, worker: Any
) -> None:
    """The cleanup page (a pipeline whose items are not rows) lists each key that failed for good,
    with its reason and when, escaped, one bounded page at a time."""
    if s3.reader is None:
        pytest.fail("this test needs the bundled S3 server's read-only user (unset BACKLANE_TEST_S3_URL)")
    app.configure("storage", **s3.settings(s3_bucket))
    store = storage_from_settings(app.runtime.settings.storage)
    hostile = f"{PREFIX}a&<b onmouseover=alert(1)>.jpg"
    store.put(hostile, b"old")
    app.clock.advance(hours=app.config("cleanup").max_age_hours + 1)
    app.configure("storage", **s3.settings(s3_bucket, s3.reader))  # may list and read, not delete
    cleanup = REGISTRY.get("cleanup")

    assert discover(cleanup).enqueued == 1
    wait_until(lambda: cleanup_stats()["failed"] == 1, timeout=30, what="the refused delete recorded")
    app.clock.advance(seconds=5)
    cleanup.process_actor.send("tracks/keep.mp3")  # a forged message: fails for good, deletes nothing
    wait_until(lambda: cleanup_stats()["failed"] == 2, timeout=30, what="the forged key recorded")

    with dashboard(app, page_size=1) as client:
        first = client.get("/pipelines/cleanup")
        assert first.status_code == 200, first.text
        html = first.text
        assert "Failed for good" in html
        assert 'data-count="failed">2<' in html
        # The newest first: the forged key, with its reason and when; one per page, then "Older".
        assert "tracks/keep.mp3" in html and "not under BACKLANE_CLEANUP__PREFIX" in html
        assert "page=1" in html and "Older" in html
        older = client.get("/pipelines/cleanup?page=1").text
        assert "AccessDenied" in older, older
        assert "<b onmouseover" not in older and "a&amp;&lt;b onmouseover=alert(1)&gt;.jpg" in older
        assert app.clock.now().strftime("%Y-%m-%d") in older
        assert "page=2" not in older, "two failures, one per page: no third page"
        found = client.get("/pipelines/cleanup", params={"q": hostile}).text
        assert "AccessDenied" in found and "tracks/keep.mp3" not in found
    assert store.exists(hostile)
