"""Pauses on a real worker, RabbitMQ and database: an inbox held, a pipeline held without a
retry spent, a forgotten pause reported."""

from __future__ import annotations

import json
import time

import pytest

from backlane.core.discovery import discover
from backlane.core.health import Health
from backlane.core.registry import REGISTRY
from backlane.operations import controls
from backlane.operations.health import pipeline_rows
from contracts.orders import OrderCreated
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.integration.test_orders_pipeline import creations_per_order, dead_letters, publish_raw, statuses
from tests.waiting import wait_until

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # CI time


def _fast(app: App) -> None:
    app.runtime.controls.refresh_seconds = 0.1
    app.configure("controls", paused_recheck_seconds=1.0)


def test_a_paused_inbox_holds_what_other_services_publish_until_it_is_resumed(app: App, worker: object) -> None:
    _fast(app)
    [order_id] = create_orders(app.db, 1, app.clock.now())
    print(controls.pause(REGISTRY, app.runtime, "test", "orders", inbox=True, reason="held"))
    publish_raw(app, json.dumps(OrderCreated(version=1, order_id=order_id).envelope()).encode())
    time.sleep(1.5)  # several looks at the pause (1 s apart at most)
    assert statuses(app) == {"pending": 1}, "a paused inbox hands nothing to the pipeline"
    controls.resume(REGISTRY, app.runtime, "test", "orders", inbox=True)
    wait_until(lambda: statuses(app) == {"succeeded": 1}, timeout=30, what="the order placed after the resume")
    assert creations_per_order(app) == [1]
    assert dead_letters(app, "orders_inbox") == []


def test_a_paused_pipeline_claims_nothing_and_its_queued_items_spend_no_retry(app: App, worker: object) -> None:
    _fast(app)
    app.configure("orders", max_retries=0)  # one failure would fail an item for good: a wait must not count
    create_orders(app.db, 5, app.clock.now())
    controls.pause(REGISTRY, app.runtime, "test", "orders")
    app.runtime.controls.refresh()
    assert discover(REGISTRY.get("orders")).enqueued == 0, "a paused pipeline's discover claims nothing"
    registered = REGISTRY.get("orders")
    claimed = registered.pipeline.fetch(registered.context(), 5)  # as discover would, then sent while paused
    for item in claimed:
        registered.process_actor.send(item)
    time.sleep(2.5)
    assert statuses(app) == {"pending": 5}
    assert sum(creations_per_order(app)) == 0, "a paused pipeline places nothing"
    controls.resume(REGISTRY, app.runtime, "test", "orders")
    wait_until(lambda: statuses(app) == {"succeeded": 5}, timeout=30, what="every order placed after the resume")
    assert creations_per_order(app) == [1] * 5
    assert dead_letters(app, "orders") == []


def test_a_pause_older_than_the_warning_is_degraded_never_unhealthy(app: App) -> None:
    controls.pause(REGISTRY, app.runtime, "test", "orders", reason="incident 42")
    rows = pipeline_rows(REGISTRY, app.runtime)["orders"]
    assert [(r.name, r.health) for r in rows] == [("orders", Health.PAUSED)]
    assert "incident 42" in rows[0].summary
    app.clock.advance(hours=25)
    [row] = pipeline_rows(REGISTRY, app.runtime)["orders"]
    assert row.health == Health.DEGRADED and "forgotten?" in row.summary
