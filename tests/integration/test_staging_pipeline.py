"""Staging batches: one handler registered twice (acme, globex), end to end on both databases."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import insert, select

from actors.staging.models import StagingBatch
from backlane.core.discovery import discover
from backlane.core.pipeline import Purpose
from backlane.core.registry import REGISTRY, Registered
from tests.integration.conftest import App
from tests.waiting import wait_until


def acme_pipeline() -> Registered:
    return REGISTRY.get("staging_acme")


def globex_pipeline() -> Registered:
    return REGISTRY.get("staging_globex")


@pytest.fixture(autouse=True)
def vendors_at_simulator(app: App) -> None:
    for section in ("staging_acme", "staging_globex"):
        app.configure(section, base_url=app.simulator.url, timeout=5.0)


def add_batches(app: App, processor: Registered, payloads: list[dict[str, Any]]) -> list[int]:
    now = app.clock.now()
    rows = [
        {"processor": processor.name, "payload": p, "status": "pending", "created_at": now, "updated_at": now}
        for p in payloads
    ]
    with app.db.transaction() as session:
        return list(session.execute(insert(StagingBatch).returning(StagingBatch.id), rows).scalars())


def payloads(count: int) -> list[dict[str, Any]]:
    return [{"urls": [f"https://shop.example/p/{i}", f"https://shop.example/p/{i}/reviews"]} for i in range(count)]


def batches(app: App) -> dict[int, StagingBatch]:
    with app.db.transaction() as session:
        return {b.id: b for b in session.scalars(select(StagingBatch))}


def completed(app: App, processor: str) -> int:
    with app.db.transaction() as session:
        statuses = session.scalars(select(StagingBatch.status).where(StagingBatch.processor == processor))
        return Counter(statuses)["completed"]


def test_both_registrations_are_listed_as_ingestion() -> None:
    acme, globex = acme_pipeline(), globex_pipeline()
    names = {r.name for r in REGISTRY.by_purpose(Purpose.INGESTION)}
    assert {"staging_acme", "staging_globex"} <= names
    assert acme.pipeline.process is globex.pipeline.process
    assert acme.pipeline.table is globex.pipeline.table
    assert acme.pipeline.fetch == globex.pipeline.fetch  # the same table's method
    assert acme.pipeline.queue_name != globex.pipeline.queue_name


def test_each_registration_processes_only_its_own_batches_within_its_limit(app: App, worker: Any) -> None:
    acme = add_batches(app, acme_pipeline(), payloads(30))
    globex = add_batches(app, globex_pipeline(), payloads(30))

    results = discover(acme_pipeline()), discover(globex_pipeline())

    assert [r.enqueued for r in results] == [5, 10]
    wait_until(lambda: completed(app, "staging_acme") + completed(app, "staging_globex") == 15, what="15 batches")
    rows = batches(app)
    done = {i for i, b in rows.items() if b.status == "completed"}
    assert len(done & set(acme)) == 5 and len(done & set(globex)) == 10
    assert all(rows[i].reason == "vendor acme scraped 2 record(s)" for i in done & set(acme))
    vendors = app.sim_stats()["vendors"]
    assert (vendors["acme"]["scraped"], vendors["globex"]["scraped"]) == (5, 10)
    assert vendors["acme"]["replays"] == vendors["globex"]["replays"] == 0
    for registered, done in ((acme_pipeline(), 5), (globex_pipeline(), 10)):
        assert registered.pipeline.stats is not None
        counts = registered.pipeline.stats(registered.context())
        assert (counts["due"], counts["done"], counts["failed"]) == (30 - done, done, 0)


def test_a_rejected_batch_ends_failed_with_the_reason(app: App, worker: Any) -> None:
    [bad] = add_batches(app, globex_pipeline(), [{"urls": []}])
    [good] = add_batches(app, globex_pipeline(), payloads(1))

    discover(globex_pipeline())

    wait_until(lambda: {b.status for b in batches(app).values()} == {"failed", "completed"}, what="both settled")
    rows = batches(app)
    assert rows[good].status == "completed"
    assert rows[bad].status == "failed"
    assert "422" in (rows[bad].reason or "") and "non-empty list of urls" in (rows[bad].reason or "")


def test_thousands_waiting_for_one_vendor_do_not_starve_the_other(app: App, worker: Any) -> None:
    add_batches(app, acme_pipeline(), payloads(3000))
    add_batches(app, globex_pipeline(), payloads(20))

    # Per cycle each registration claims its own batches only, at its own limit, in O(batch).
    started = time.monotonic()
    ticks = [(discover(acme_pipeline()).enqueued, discover(globex_pipeline()).enqueued) for _ in range(2)]
    claim_seconds = time.monotonic() - started
    assert ticks == [(5, 10), (5, 10)]
    wait_until(lambda: completed(app, "staging_globex") == 20, what="all globex batches")
    wait_until(lambda: completed(app, "staging_acme") == 10, what="two cycles of acme batches")

    # Even with acme's whole backlog on its queue at once, globex's batches go straight through.
    app.simulator.configure(latency_ms=5)
    app.configure("staging_acme", max_items=3000)
    add_batches(app, globex_pipeline(), payloads(10))
    assert discover(acme_pipeline()).enqueued == 2990
    assert discover(globex_pipeline()).enqueued == 10
    wait_until(lambda: completed(app, "staging_globex") == 30, timeout=30, what="globex batches behind acme's flood")
    assert completed(app, "staging_acme") < 1500, "globex finished while acme's backlog was still being worked"
    assert app.queue_counts("staging_acme")[0] > 0
    print(f"4 claims over 3,020 waiting batches: {claim_seconds * 1000:.0f} ms")
