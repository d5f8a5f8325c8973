"""Pauses on a real worker, RabbitMQ and database: an inbox held, a pipeline held without a
retry spent, a forgotten pause reported."""

from __future__ import annotations

import json
import time

import pytest

from backlane.core.discovery import discover
from backlane.core.health import Health
from backlane.core.registry import REGISTRY
from backlane.operations import audit, controls
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


def test_a_cancel_job_over_a_large_selection_stops_halfway_and_resumes_cancelling_each_once(app: App) -> None:
    from sqlalchemy import func, select, update

    from actors.orders.models import Order
    from backlane.operations.jobs import get_job, operations, run_job, store

    conversation = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    keep = create_orders(app.db, 3, app.clock.now())  # not selected: another conversation
    selected = create_orders(app.db, 1500, app.clock.now())
    with app.db.transaction() as session:
        session.execute(update(Order).where(Order.id.in_(selected)).values(mt_conversation_id=conversation))
        session.execute(update(Order).where(Order.id == selected[0]).values(external_order_id="ext-placed"))
    job_id = controls.cancel_job(
        REGISTRY, app.runtime, "cli:alice", "orders", search=conversation, reason="batch withdrawn", detach=False
    )

    def stop_at_half(view: store.JobView) -> None:
        if view.done >= 1 and not view.stop_requested:  # after the first page
            operations.stop(app.runtime, "cli:bob", job_id)

    assert run_job(app.runtime, job_id, on_progress=stop_at_half).status == "stopped"
    half = get_job(app.db, job_id)
    assert half.total == 1499 and 500 <= half.done < 1499, (half.done, half.total)
    operations.resume(app.runtime, "cli:bob", job_id, detach=False)
    assert run_job(app.runtime, job_id).status == "done"
    job = get_job(app.db, job_id)
    assert (job.done, job.total) == (1499, 1499), (job.done, job.total)
    with app.db.transaction() as session:
        counts = dict(session.execute(select(Order.status, func.count()).group_by(Order.status)).all())
        reasons = set(session.scalars(select(Order.failure_reason).where(Order.status == "cancelled")))
    # The one already placed at the API is left as it was; nothing outside the selection is touched.
    assert counts == {"cancelled": 1499, "pending": 1 + len(keep)}, counts
    assert reasons == {"cancelled by cli:alice: batch withdrawn"}
    actions = [e.action for e in reversed(audit.events(app.db).events)]
    assert actions == ["cancel", "job-stop", "job-end", "job-resume", "job-end"], actions
