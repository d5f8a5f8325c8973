"""The order API and the product API behind the simulator's identity server, on the real broker,
both databases and a real worker in this process: tokens that expire every few seconds.

Time: the simulator issues 3-second tokens and the clients renew them 1.5 s before they expire
(the renewal margin), so a run of a few seconds crosses several expiries for real, with no clock
moved: what matters is that every renewal is one token request, however many threads want it.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from actors.exports.models import Export, ExportRun
from actors.orders.models import Order
from backlane.core.discovery import discover
from backlane.core.registry import REGISTRY
from backlane.settings import OAuthSettings
from devtools.sample import create_orders
from devtools.simulator import identity
from tests.integration.conftest import App
from tests.waiting import wait_until

ORDERS, PRODUCTS, PAGE_SIZE = 2000, 3000, 10
LIFETIME, MARGIN = 3, 1.5
CLIENTS = {
    "backlane-orders": {"secret": "orders-secret-5d1f0c", "scopes": ["orders.api"]},
    "backlane-exports": {"secret": "exports-secret-9a7e22", "scopes": ["products.api"]},
}


def oauth(app: App, client: str, scope: str) -> OAuthSettings:
    return OAuthSettings.model_validate(
        {
            "token_url": f"{app.simulator.url}/connect/token",
            "client_id": client,
            "client_secret": CLIENTS[client]["secret"],
            "scope": scope,
            "renew_margin_seconds": MARGIN,
            "timeout": 5,
        }
    )


@pytest.fixture
def protected(app: App, tmp_path: Path) -> Path:
    """Both APIs want tokens (their /health too); both pipelines have client credentials."""
    identity.configure(
        app.simulator.state,
        clients=CLIENTS,
        token_lifetime_seconds=LIFETIME,
        required={"orders": "orders.api", "products": "products.api"},
    )
    out = tmp_path / "exports"
    app.use_simulator("exports")
    app.configure(
        "exports", output_dir=str(out), page_size=PAGE_SIZE, oauth=oauth(app, "backlane-exports", "products.api")
    )
    app.configure("orders", max_items=ORDERS, oauth=oauth(app, "backlane-orders", "orders.api"))
    app.simulator.configure(product_count=PRODUCTS)
    return out


def add_export(app: App, name: str) -> int:
    now = app.clock.now()
    row = {"name": name, "format": "csv", "path": f"{name}.csv", "next_page": 1, "rows_written": 0}
    row |= {"partial_bytes": 0, "next_run_at": now, "created_at": now, "updated_at": now}
    with app.db.transaction() as session:
        return session.execute(insert(Export).returning(Export.id), row).scalar_one()


def identity_stats(app: App) -> dict[str, Any]:
    return dict(app.sim_stats()["identity"])


def order_statuses(app: App) -> Counter[str]:
    with app.db.transaction() as session:
        return Counter(session.scalars(select(Order.status)))


def export_runs(app: App, export_id: int) -> list[ExportRun]:
    with app.db.transaction() as session:
        return list(session.scalars(select(ExportRun).where(ExportRun.export_id == export_id)))


def test_orders_and_an_export_across_token_expiries_one_token_request_each(
    app: App, worker: Any, protected: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    create_orders(app.db, ORDERS, app.clock.now())
    export_id = add_export(app, "products")

    exports = discover(REGISTRY.get("exports"))  # its health check, without a token, answers 401: up
    orders = discover(REGISTRY.get("orders"))

    assert (exports.enqueued, orders.enqueued) == (1, ORDERS)
    wait_until(lambda: order_statuses(app)["succeeded"] == ORDERS, timeout=120, interval=0.5, what="every order placed")
    wait_until(
        lambda: [r.outcome for r in export_runs(app, export_id)] == ["succeeded"], timeout=120, what="export written"
    )
    stats = app.sim_stats()
    by_key = stats["orders"]["by_key"]
    with app.db.transaction() as session:
        request_ids = list(session.scalars(select(Order.request_id)))
    assert [by_key.get(rid, {}).get("creations", 0) for rid in request_ids] == [1] * ORDERS
    [run] = export_runs(app, export_id)
    assert (run.rows, run.pages) == (PRODUCTS, PRODUCTS // PAGE_SIZE)
    assert len(Path(run.file_path or "").read_text().splitlines()) == PRODUCTS + 1

    tokens = identity_stats(app)
    assert tokens["refused"] == {} and tokens["api_refusals"] == {"missing": 1}, "only the health check's 401"
    for client in CLIENTS:
        issued_at = tokens["issued_at"][client]
        gaps = [later - earlier for earlier, later in zip(issued_at, issued_at[1:], strict=False)]
        # One request per token: the next one only once the last is within its margin of expiring
        # (LIFETIME - MARGIN after it was asked for), never two for the same expiry.
        assert tokens["token_requests"][client] == len(issued_at), client
        assert all(gap >= LIFETIME - MARGIN - 0.25 for gap in gaps), (client, gaps)
    assert len(tokens["issued_at"]["backlane-orders"]) >= 3, "the orders crossed several expiries"
    assert len(tokens["issued_at"]["backlane-exports"]) >= 2, "the export crossed an expiry"

    secrets = [c["secret"] for c in CLIENTS.values()] + identity.issued_tokens(app.simulator.state)
    formatter = logging.Formatter("%(name)s %(message)s")
    lines = [formatter.format(record) for record in caplog.records]
    assert len(lines) > ORDERS, "the worker's lines were captured"
    leaked = [line for line in lines if any(secret in line for secret in secrets)]
    assert leaked == []


def test_a_rejected_client_waits_named_in_one_line_and_loses_nothing(
    app: App, worker: Any, protected: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    wrong = oauth(app, "backlane-orders", "orders.api").model_copy(
        update={"client_secret": OAuthSettings(client_secret="wrong-secret-3c9b").client_secret}
    )
    app.configure("orders", oauth=wrong)
    create_orders(app.db, 5, app.clock.now())
    assert discover(REGISTRY.get("orders")).enqueued == 5

    def named() -> list[str]:
        return [r.getMessage() for r in caplog.records if "BACKLANE_ORDERS__OAUTH__CLIENT_SECRET" in r.getMessage()]

    lines = wait_until(named, timeout=5, what="the rejected client named")
    assert "invalid_client" in lines[0] and "wrong-secret-3c9b" not in caplog.text
    assert order_statuses(app) == Counter({"pending": 5}), "waiting, not failed"
    assert app.sim_stats()["orders"]["created"] == 0

    app.configure("orders", oauth=oauth(app, "backlane-orders", "orders.api"))  # fixed
    wait_until(lambda: order_statuses(app)["succeeded"] == 5, timeout=60, what="the orders placed once fixed")
