"""The dashboard's controls in process, on the real database: pause and resume, runtime
settings, cancel and reopen, the audit trail with the dashboard's user, a part's history;
hostile values shown as text; every action a guarded POST."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from actors.orders.models import Order
from backlane.core.controls import read_state
from backlane.operations import audit
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.integration.test_dashboard_app import HOSTILE, csrf_of, dashboard

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def client(app: App) -> Iterator[Any]:
    with dashboard(app) as client:
        yield client


def test_pause_and_resume_from_the_pipeline_page_as_the_dashboards_user(app: App) -> None:
    with dashboard(app, password="correct horse battery", user="alice") as client:
        client.auth = ("alice", "correct horse battery")
        token = csrf_of(client, "/pipelines/orders")
        done = client.post("/pipelines/orders/pause", data={"csrf": token, "reason": HOSTILE})
        assert done.status_code == 303 and "orders+paused" in done.headers["location"]
        assert read_state(app.db).paused("orders") is not None
        page = client.get("/pipelines/orders").text
        assert "Paused: paused by dashboard:alice" in page and "Resume" in page
        assert HOSTILE not in page and "&lt;script&gt;" in page
        assert 'class="health paused"' in page

        assert client.post("/pipelines/orders/resume", data={"csrf": "forged"}).status_code == 403
        client.post("/pipelines/orders/resume", data={"csrf": token})
        assert read_state(app.db).paused("orders") is None
        trail = client.get("/audit").text
        assert trail.count("dashboard:alice") == 2 and "pause" in trail and "resume" in trail
        assert HOSTILE not in trail


def test_a_catalog_section_pauses_on_its_own_page_and_shows_its_runs(app: App, client: Any) -> None:
    token = csrf_of(client, "/pipelines/catalog/parts/brands")
    client.post("/pipelines/catalog/pause", data={"csrf": token, "part": "brands", "back": "part"})
    assert read_state(app.db).paused("catalog", "brands") is not None
    assert read_state(app.db).paused("catalog") is None
    page = client.get("/pipelines/catalog/parts/brands").text
    assert "Resume brands" in page and "no run recorded yet" in page
    assert client.get("/pipelines/catalog/parts/nope").status_code == 404
    assert client.post("/pipelines/catalog/pause", data={"csrf": token, "part": "nope"}).status_code == 303
    assert read_state(app.db).paused("catalog", "nope") is None


def test_a_runtime_setting_is_set_validated_and_reverted_from_its_page(app: App, client: Any) -> None:
    token = csrf_of(client, "/pipelines/orders/settings")
    bad = client.post("/pipelines/orders/settings/set", data={"csrf": token, "key": "max_items", "value": "0"})
    assert "not+done" in bad.headers["location"] and "BACKLANE_ORDERS__MAX_ITEMS" in bad.headers["location"]
    client.post("/pipelines/orders/settings/set", data={"csrf": token, "key": "max_items", "value": "7"})
    assert read_state(app.db).overrides_of("orders")["max_items"].value == 7
    page = client.get("/pipelines/orders/settings").text
    assert "runtime, by dashboard:local" in page and "Revert" in page
    client.post("/pipelines/orders/settings/unset", data={"csrf": token, "key": "max_items"})
    assert "max_items" not in read_state(app.db).overrides_of("orders")


def test_cancel_by_search_then_reopen_from_the_items_page(app: App, client: Any) -> None:
    ids = create_orders(app.db, 3, app.clock.now())
    with app.db.transaction() as session:
        request_id = session.scalar(select(Order.request_id).where(Order.id == ids[0]))
    token = csrf_of(client, "/pipelines/orders")
    needs_reason = client.post("/pipelines/orders/cancel", data={"csrf": token, "search": request_id})
    assert "not+done" in needs_reason.headers["location"]
    done = client.post("/pipelines/orders/cancel", data={"csrf": token, "search": request_id, "reason": "dup"})
    assert "cancelled+1+of+1" in done.headers["location"]
    client.post("/pipelines/orders/cancel", data={"csrf": token, "ids": f"{ids[1]}, 999999", "reason": "dup"})
    with app.db.transaction() as session:
        rows = {row.id: row.status for row in session.execute(select(Order.id, Order.status))}
    assert rows == {ids[0]: "cancelled", ids[1]: "cancelled", ids[2]: "pending"}
    client.post("/pipelines/orders/reopen", data={"csrf": token, "ids": str(ids[0])})
    with app.db.transaction() as session:
        assert session.scalar(select(Order.status).where(Order.id == ids[0])) == "pending"
    actions = [e.action for e in audit.events(app.db).events]
    assert actions.count("cancel") == 3 and actions.count("reopen") == 1
    refused = [e for e in audit.events(app.db).events if e.outcome == "refused"]
    assert len(refused) == 1 and "--reason" in refused[0].result
