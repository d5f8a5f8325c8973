"""A worker stuck past its lease (a long GC pause, a frozen VM, SIGSTOP) whose staging batch
another worker re-claimed does nothing that worker already did: the fence before the vendor's
scrape, the guarded write after it, and the vendor's Idempotency-Key. Both databases, the
real vendor simulator; time moves through the injected clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from actors.staging import BATCH_ROWS
from actors.staging.client import VendorScraperClient
from actors.staging.models import StagingBatch
from backlane.core.registry import REGISTRY
from backlane.core.table import ItemTable
from tests.integration.conftest import App
from tests.integration.test_staging_pipeline import add_batches, payloads


@pytest.fixture(autouse=True)
def vendors_at_simulator(app: App) -> None:
    app.configure("staging_acme", base_url=app.simulator.url, timeout=5.0)


def _live_worker_takes_over(app: App, batch_id: int) -> Callable[[], None]:
    """What the live worker does while the zombie is stuck: the lease runs out, its discover
    claims the batch again and it processes it to the end."""
    acme = REGISTRY.get("staging_acme")

    def take_over() -> None:
        app.clock.advance(seconds=acme.context().config.lease_seconds + 1)
        assert acme.pipeline.fetch is not None
        assert acme.pipeline.fetch(acme.context(), 10) == [batch_id], "the lease ran out: claimed again"
        acme.pipeline.process(acme.context(), batch_id)

    return take_over


def _batch(app: App, batch_id: int) -> StagingBatch:
    with app.db.transaction() as session:
        batch = session.scalars(select(StagingBatch).where(StagingBatch.id == batch_id)).one()
        session.expunge(batch)
        return batch


def _claimed_batch(app: App) -> int:
    acme = REGISTRY.get("staging_acme")
    [batch_id] = add_batches(app, acme, payloads(1))
    assert acme.pipeline.fetch is not None
    assert acme.pipeline.fetch(acme.context(), 10) == [batch_id]
    return batch_id


def test_a_worker_stuck_after_loading_its_batch_does_not_scrape_it_once_it_was_reclaimed(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch_id = _claimed_batch(app)
    take_over = _live_worker_takes_over(app, batch_id)
    real_load = ItemTable.load
    stuck: list[bool] = []

    def load_then_freeze(self: ItemTable, ctx: Any, row_id: Any, *columns: Any) -> Any:
        row = real_load(self, ctx, row_id, *columns)
        if self is BATCH_ROWS and not stuck:
            stuck.append(True)  # the zombie has its row (with work left) and freezes here
            take_over()
        return row

    monkeypatch.setattr(ItemTable, "load", load_then_freeze)
    acme = REGISTRY.get("staging_acme")
    acme.pipeline.process(acme.context(), batch_id)  # the zombie wakes up and goes on

    vendor = app.sim_stats()["vendors"]["acme"]
    assert (vendor["calls"], vendor["scraped"], vendor["duplicates"]) == (1, 1, 0), vendor
    batch = _batch(app, batch_id)
    assert batch.status == "completed" and batch.reason == "vendor acme scraped 2 record(s)"


def test_a_worker_stuck_during_its_scrape_writes_nothing_and_the_vendor_scrapes_once(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the fence, a worker can still freeze before its call reaches the vendor: the call then
    carries the same Idempotency-Key as the live worker's (the vendor answers it again without
    scraping) and the write after it is refused, the lease being the live worker's."""
    batch_id = _claimed_batch(app)
    take_over = _live_worker_takes_over(app, batch_id)
    real_scrape = VendorScraperClient.scrape
    stuck: list[bool] = []

    def freeze_then_scrape(self: VendorScraperClient, vendor: str, key: str, payload: dict[str, Any]) -> int:
        if not stuck:
            stuck.append(True)
            take_over()
        return real_scrape(self, vendor, key, payload)

    monkeypatch.setattr(VendorScraperClient, "scrape", freeze_then_scrape)
    acme = REGISTRY.get("staging_acme")
    acme.pipeline.process(acme.context(), batch_id)

    vendor = app.sim_stats()["vendors"]["acme"]
    assert vendor["scraped"] == 1, f"one scrape at the vendor, whatever the calls: {vendor}"
    assert (vendor["calls"], vendor["replays"], vendor["duplicates"]) == (2, 1, 1), vendor
    batch = _batch(app, batch_id)
    assert batch.status == "completed" and batch.lease_until is None


def test_the_fence_is_a_compare_and_set_each_take_a_new_token(app: App) -> None:
    acme = REGISTRY.get("staging_acme")
    batch_id = _claimed_batch(app)
    ctx = acme.context()
    token = _batch(app, batch_id).lease_until
    first = BATCH_ROWS.fence(ctx, batch_id, token)
    assert first is not None
    assert BATCH_ROWS.fence(ctx, batch_id, token) is None, "the same token twice: only one gets through"
    second = BATCH_ROWS.fence(ctx, batch_id, first.token)  # the clock stands still: still a new token
    assert second is not None and second.token != first.token
    assert not BATCH_ROWS.update(ctx, batch_id, fenced=first, status="completed"), "an old token writes nothing"
    assert BATCH_ROWS.update(ctx, batch_id, fenced=second, status="completed")
