"""Each item's tries and last outcome on the real broker and database (SQLite and PostgreSQL):
an order that fails twice then succeeds shows three attempts, on its row and on the dashboard."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from backlane.core.discovery import discover
from backlane.core.registry import REGISTRY
from backlane.db.models import ItemAttempts
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.integration.test_dashboard_app import dashboard, item_cells
from tests.integration.test_orders_pipeline import all_settled, creations_per_order, statuses
from tests.waiting import wait_until


def record(app: App, order_id: int) -> tuple[int, str, str | None] | None:
    with app.db.connection() as connection:
        found = connection.execute(
            select(ItemAttempts.attempts, ItemAttempts.last_outcome, ItemAttempts.last_reason).where(
                ItemAttempts.pipeline == "orders", ItemAttempts.item_id == str(order_id)
            )
        ).one_or_none()
    return None if found is None else (found.attempts, found.last_outcome, found.last_reason)


def test_an_order_failing_twice_then_succeeding_shows_three_attempts(app: App, worker: Any) -> None:
    # Backoffs of a second or more, so the simulator is mended well before the third try.
    app.configure("orders", min_backoff_ms=1000, max_backoff_ms=4000)
    # The first order is placed at the first try: nothing is recorded for it.
    [first_try] = create_orders(app.db, 1, app.clock.now())
    discover(REGISTRY.get("orders"))
    wait_until(lambda: statuses(app)["succeeded"] == 1, timeout=30, what="the first order placed")

    app.simulator.configure(failure_rate=1.0)
    [twice] = create_orders(app.db, 1, app.clock.now())
    discover(REGISTRY.get("orders"))
    wait_until(
        lambda: app.sim_stats()["failures"]["transient"] >= 2, timeout=30, interval=0.02, what="two failed tries"
    )
    app.simulator.configure(failure_rate=0.0)
    wait_until(lambda: record(app, twice), timeout=5, what="the second try's record")
    assert (record(app, twice) or ())[:2] == (2, "retrying")

    wait_until(lambda: all_settled(app, 2), timeout=30, what="both orders placed")
    time.sleep(0.2)  # the success's record is written right after the row
    assert app.sim_stats()["failures"]["transient"] == 2
    assert creations_per_order(app) == [1, 1]
    assert record(app, first_try) is None
    attempts, outcome, _reason = record(app, twice) or (None, None, None)
    assert (attempts, outcome) == (3, "succeeded")

    with dashboard(app) as client:
        cells = item_cells(client.get("/pipelines/orders").text)
    assert cells[str(twice)]["attempts"] == "3"
    assert cells[str(twice)]["last outcome"].startswith("succeeded (last failure: ")
    assert (cells[str(first_try)]["attempts"], cells[str(first_try)]["last outcome"]) == ("1", "succeeded")


def test_every_table_pipelines_page_reads_its_rows_with_their_attempts(app: App) -> None:
    create_orders(app.db, 1, app.clock.now())
    names = [r.name for r in REGISTRY if r.pipeline.table is not None]
    assert {"orders", "tracks", "exports", "staging_acme"} <= set(names), names
    with dashboard(app) as client:
        for name in names:
            page = client.get(f"/pipelines/{name}")
            assert page.status_code == 200, (name, page.text)
            assert "cannot be read" not in page.text and "Traceback" not in page.text, name
            assert "<th>attempts</th><th>last outcome</th>" in page.text, name
