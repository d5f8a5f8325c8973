"""The order API and the product API behind the simulator's identity server, on the real broker,
both databases and a real worker in this process: tokens that expire every few seconds.

Time: the simulator issues 3-second tokens and the clients renew them 1.5 s before they expire
(the renewal margin), so a run of a few seconds crosses several expiries for real, with no clock
moved: what matters is that every renewal is one token request, however many threads want it.
"""

from __future__ import annotations

import itertools
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


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # CI cost; the others run on SQLite
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
        gaps = [later - earlier for earlier, later in itertools.pairwise(issued_at)]
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


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the 2,000-order run is on PostgreSQL
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


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the 2,000-order run is on PostgreSQL
def test_an_identity_server_down_is_transient_and_counted_by_the_export_breaker(
    app: App, worker: Any, protected: Path
) -> None:
    from backlane.resilience.breaker import CircuitBreaker

    def breaker() -> str:
        return str(CircuitBreaker(app.db, app.clock, "product_api", 3, 30).state()["state"])

    app.configure("exports", max_retries=10, min_backoff_ms=50, max_backoff_ms=100, breaker_open_seconds=1)
    app.simulator.configure(outage=["identity"], product_count=100)
    export_id = add_export(app, "products")

    assert discover(REGISTRY.get("exports")).enqueued == 1, "the product API itself is up (401)"
    wait_until(lambda: breaker() == "open", timeout=30, what="the breaker opened on token failures")
    assert app.sim_stats()["products"]["page_requests"] == {}, "no page without a token"
    app.simulator.configure(outage=[])
    app.clock.advance(seconds=2)  # past the open period: the next attempt is the trial
    wait_until(
        lambda: [r.outcome for r in export_runs(app, export_id)] == ["succeeded"], timeout=60, what="export written"
    )
    assert breaker() == "closed" and identity_stats(app)["issued"] == {"backlane-exports": 1}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the 2,000-order run is on PostgreSQL
def test_catalog_sources_and_vendors_take_their_own_client_credentials(app: App, worker: Any) -> None:
    """Each catalog source and each staging vendor has its own ``oauth`` section."""
    from actors.catalog.sections import section_spec
    from actors.catalog.sources import fetch_section
    from tests.integration.test_staging_pipeline import acme_pipeline, add_batches, completed, payloads

    identity.configure(
        app.simulator.state, token_lifetime_seconds=60, required={"erp": "catalog.api", "vendors": "vendors.api"}
    )
    token_url = f"{app.simulator.url}/connect/token"
    credentials = {"token_url": token_url, "client_id": identity.DEMO_CLIENT_ID}
    credentials["client_secret"] = identity.DEMO_CLIENT_SECRET
    catalog = app.config("catalog").with_source(
        "erp", base_url=app.simulator.url, oauth={**credentials, "scope": "catalog.api", "auth_method": "post"}
    )
    for _ in range(2):
        assert isinstance(fetch_section(app.db, app.clock, catalog, section_spec("erp_stock")), list)
    without = app.config("catalog").with_source("erp", base_url=app.simulator.url)
    with pytest.raises(Exception, match="answered 401"):
        fetch_section(app.db, app.clock, without, section_spec("erp_stock"))

    acme = acme_pipeline()
    app.configure(acme.name, base_url=app.simulator.url, timeout=5.0)
    app.configure(acme.name, oauth=OAuthSettings.model_validate({**credentials, "scope": "vendors.api"}))
    add_batches(app, acme, payloads(5))  # acme's limit per tick
    assert discover(acme).enqueued == 5
    wait_until(lambda: completed(app, acme.name) == 5, timeout=60, what="the vendor's batches")
    assert identity_stats(app)["token_requests"] == {identity.DEMO_CLIENT_ID: 2}, "one per client: erp, acme"
