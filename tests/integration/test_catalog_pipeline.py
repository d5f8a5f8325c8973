"""Catalog end to end: real simulator over HTTP, real RabbitMQ, SQLite and PostgreSQL.

Most tests run the refresh in the test thread (fetch → process), so every step
is deterministic; the breaker test runs a real worker, because retries are part
of what it proves.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select

from actors.catalog.models import (
    CatalogBrand,
    CatalogBrandCategory,
    CatalogCategory,
    CatalogPrice,
    CatalogProduct,
    CatalogRecord,
)
from backlane.core.clock import as_utc
from backlane.core.discovery import discover
from backlane.core.registry import Registered
from backlane.errors import RateLimited, TransientError
from backlane.resilience import CircuitBreaker, RateLimiter
from tests.integration.catalog_support import (
    admin,
    catalog_pipeline,  # noqa: F401  (the `catalog` fixture)
    only_sections,
    run_due,
    section,
    set_catalog,
    trigger,
)
from tests.integration.conftest import App
from tests.waiting import wait_until

DATA_TABLES = ("catalog_categories", "catalog_brands", "catalog_brand_categories", "catalog_products")
DATA_TABLES += ("catalog_prices", "catalog_records")
INTERVALS = {
    "erp_stock": 5,
    "eshop_stock": 10,
    "stock_taking": 10,
    "transport": 15,
    "lots": 15,
    "sales": 30,
    "consumed_materials": 30,
    "purchase_history": 60,
    "attributes": 60,
    "suppliers": 120,
    "categories": 30,
    "brands": 30,
}


def test_each_section_refreshes_on_its_own_interval_and_no_other(app: App, catalog: Registered) -> None:
    first = [name for batch in run_due(app, catalog) for name in batch]
    assert sorted(first) == sorted(INTERVALS)
    refreshed: dict[str, list[int]] = {name: [] for name in INTERVALS}
    for minute in range(5, 245, 5):
        app.clock.advance(minutes=5)
        for batch in run_due(app, catalog):
            for name in batch:
                refreshed[name].append(minute)
    for name, interval in INTERVALS.items():
        assert refreshed[name] == list(range(interval, 245, interval)), name
    assert all(section(app, name).last_outcome == "succeeded" for name in INTERVALS)


def test_at_most_max_concurrent_leases_and_a_disabled_section_is_never_claimed(app: App, catalog: Registered) -> None:
    set_catalog(app, app.config("catalog").with_section("suppliers", enabled=False))
    claimed = catalog.pipeline.fetch(catalog.context(), 500)
    assert len(claimed) == 3
    assert catalog.pipeline.fetch(catalog.context(), 500) == []  # every slot is taken
    rounds = run_due(app, catalog)  # finishes the three claimed above? no: they are still leased
    assert rounds == []
    for item in claimed:
        catalog.pipeline.process(catalog.context(), item)
    names = [n for batch in run_due(app, catalog) for n in batch]
    assert "suppliers" not in names and len(names) == 8
    trigger(catalog, "suppliers")  # an operator's request refreshes it all the same
    assert section(app, "suppliers").last_outcome == "succeeded"


def test_second_refresh_of_unchanged_data_writes_nothing(app: App, catalog: Registered) -> None:
    run_due(app, catalog)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        verb = statement.lstrip().split(" ", 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE") and any(t in statement for t in DATA_TABLES):
            statements.append(statement)

    event.listen(app.db.engine, "before_cursor_execute", count)
    try:
        app.clock.advance(minutes=1)
        for name in INTERVALS:
            trigger(catalog, name)
    finally:
        event.remove(app.db.engine, "before_cursor_execute", count)
    assert statements == []
    for name in INTERVALS:
        counts = section(app, name).last_counts
        assert counts is not None and counts["unchanged"] > 0, name
        assert (counts["inserted"], counts["updated"], counts["removed"], counts["pruned"]) == (0, 0, 0, 0), name


def test_changes_touch_only_what_changed_and_keep_relationships(app: App, catalog: Registered) -> None:
    run_due(app, catalog)
    with app.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(CatalogProduct)) == 50
        assert session.scalar(select(func.count()).select_from(CatalogPrice)) == 100
        assert session.scalar(select(func.count()).select_from(CatalogBrandCategory)) == 20
        before = {b.external_id: as_utc(b.updated_at) for b in session.scalars(select(CatalogBrand))}
    brands = httpx.get(f"{app.simulator.url}/_admin/catalog/brands", timeout=5).json()["items"]
    brand = brands[0]
    brand["products"][0]["prices"][0]["amount"] = "1.00"  # one price changes
    brand["products"].pop()  # one product (and its two prices) leaves
    brand["categories"] = ["cat-19"]  # links replaced
    admin(app, "brands", {"upsert": [brand], "remove": ["brand-9"]})
    app.clock.advance(minutes=1)

    trigger(catalog, "brands")

    counts = section(app, "brands").last_counts
    assert counts is not None
    # updated: 1 price; removed: 1 product + brand-9 (its 5 products, 10 prices, links cascade) + 2 old links
    assert (counts["inserted"], counts["updated"]) == (1, 1)
    with app.db.transaction() as session:
        brand_row = session.scalars(select(CatalogBrand).where(CatalogBrand.external_id == "brand-0")).one()
        links = set(
            session.scalars(
                select(CatalogBrandCategory.category_external_id).where(CatalogBrandCategory.brand_id == brand_row.id)
            )
        )
        assert links == {"cat-19"}
        assert session.scalar(select(func.count()).select_from(CatalogProduct)) == 44
        assert session.scalar(select(func.count()).select_from(CatalogPrice)) == 88
        price = session.scalars(
            select(CatalogPrice)
            .join(CatalogProduct)
            .where(CatalogProduct.external_id == "prod-0-0", CatalogPrice.currency == "EUR")
        ).one()
        assert price.amount_minor == 100
        after = {b.external_id: as_utc(b.updated_at) for b in session.scalars(select(CatalogBrand))}
    assert "brand-9" not in after
    assert all(after[k] == before[k] for k in after), "no brand row itself changed"


def test_retention_prunes_exactly_the_rows_older_than_the_window(app: App, catalog: Registered) -> None:
    only_sections(app, "sales")
    now = app.clock.now()
    ages = {
        "new": timedelta(days=1),
        "kept-355d-minus-1s": timedelta(days=355) - timedelta(seconds=1),
        "kept-exactly-355d": timedelta(days=355),
        "pruned-355d-plus-1s": timedelta(days=355, seconds=1),
        "pruned-364d": timedelta(days=364),
        "never-stored-400d": timedelta(days=400),
    }
    admin(app, "sales", {"items": [{"id": k, "occurred_at": (now - age).isoformat()} for k, age in ages.items()]})
    run_due(app, catalog)
    assert stored_ids(app, "sales") == set(ages) - {"never-stored-400d"}

    app.clock.advance(days=10)  # the window now starts 355 days before the original now
    admin(app, "sales", {"remove": ["new"]})  # a history row the source stopped sending stays
    run_due(app, catalog)

    assert stored_ids(app, "sales") == {"new", "kept-355d-minus-1s", "kept-exactly-355d"}
    counts = section(app, "sales").last_counts
    assert counts is not None and counts["pruned"] == 2 and counts["removed"] == 0


def stored_ids(app: App, name: str) -> set[str]:
    with app.db.transaction() as session:
        return set(session.scalars(select(CatalogRecord.external_id).where(CatalogRecord.section == name)))


def test_a_failing_section_keeps_its_last_good_data(app: App, catalog: Registered) -> None:
    only_sections(app, "categories")
    run_due(app, catalog)
    app.simulator.configure(outage=["catalog"])
    app.clock.advance(minutes=31)
    [item] = catalog.pipeline.fetch(catalog.context(), 500)
    with pytest.raises(TransientError):
        catalog.pipeline.process(catalog.context(), item)
    row = section(app, "categories")
    assert row.last_outcome == "retrying" and "503" in (row.last_error or "")
    assert row.lease_until is None, "a failed attempt gives its slot back"
    with app.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(CatalogCategory)) == 20


def test_server_wait_holds_every_worker_off_the_endpoint(app: App, catalog: Registered) -> None:
    only_sections(app, "categories", "brands")
    config = app.config("catalog")
    set_catalog(app, config.with_limiter("catalog", calls=2).with_limiter("categories", calls=2))
    app.simulator.configure(rate_limits={"catalog": [1, 3600]})  # the server is stricter than we know
    for item in catalog.pipeline.fetch(catalog.context(), 500):
        catalog.pipeline.process(catalog.context(), item)
    assert catalog_requests(app) == 2

    app.clock.advance(minutes=30)  # both due again: the catalog endpoint says wait, categories does not
    items = {item["section"]: item for item in catalog.pipeline.fetch(catalog.context(), 500)}
    with pytest.raises(RateLimited) as told:
        catalog.pipeline.process(catalog.context(), items["brands"])
    assert 3590 < told.value.delay_seconds <= 3600  # the simulator counts real time
    catalog.pipeline.process(catalog.context(), items["categories"])  # its own limiter: not held
    assert section(app, "categories").last_outcome == "succeeded"
    requests = catalog_requests(app)
    assert requests == 4

    assert section(app, "brands").last_outcome == "waiting"
    limiter = RateLimiter(app.db, app.clock)
    assert limiter.state("limiter:catalog")["held_until"] is not None, "every worker waits on brands"
    assert limiter.state("limiter:categories")["held_until"] is None
    with pytest.raises(RateLimited):
        limiter.acquire("limiter:catalog", 2, 3600)
    assert catalog_requests(app) == requests


def catalog_requests(app: App) -> int:
    stats = app.sim_stats()["requests"]
    return stats.get("catalog.categories", 0) + stats.get("catalog.brands", 0)


def test_a_source_down_gets_threshold_calls_and_one_trial_per_open_period(
    app: App, catalog: Registered, worker: Any
) -> None:
    only_sections(app, "eshop_stock", "sales", "erp_stock")
    set_catalog(app, app.config("catalog").model_copy(update={"breaker_open_seconds": 1.0}))
    app.simulator.configure(outage=["eshop"])
    breaker = CircuitBreaker(app.db, app.clock, "source:eshop", 3, 1.0)

    discover(catalog)
    wait_until(lambda: breaker.state()["state"] == "open", timeout=30, what="the eshop breaker to open")
    wait_until(lambda: section(app, "erp_stock").last_outcome == "succeeded", timeout=30, what="erp_stock fresh")
    assert eshop_requests(app) == 3
    for period in range(1, 4):
        wait_until(lambda: retried_while_open(app), timeout=30, what="refused retries while open")
        assert eshop_requests(app) == 2 + period
        app.clock.advance(seconds=1)  # the open period ends: one trial, which fails
        wait_until(lambda p=period: breaker.state()["times_opened"] == p + 1, timeout=30, what="the trial")
        assert eshop_requests(app) == 3 + period

    app.clock.advance(minutes=5)  # erp_stock is due again, eshop is still down
    before = section(app, "erp_stock").last_success_at
    discover(catalog)
    wait_until(lambda: section(app, "erp_stock").last_success_at != before, timeout=30, what="erp_stock again")
    assert eshop_requests(app) <= 3 + 3 + 1

    app.simulator.configure(outage=[])
    app.clock.advance(seconds=2)
    discover(catalog)
    wait_until(
        lambda: {section(app, n).last_outcome for n in ("eshop_stock", "sales")} == {"succeeded"},
        timeout=60,
        what="the eshop sections to recover",
    )
    assert breaker.state()["state"] == "closed"
    health = Counter(row.health for row in catalog.pipeline.health(catalog.context()) if row.details["enabled"])
    assert health == Counter({"healthy": 3})


def eshop_requests(app: App) -> int:
    stats = app.sim_stats()["requests"]
    return stats.get("eshop.eshop_stock", 0) + stats.get("eshop.sales", 0)


def retried_while_open(app: App) -> bool:
    return all("circuit_open" in (section(app, n).last_error or "") for n in ("eshop_stock", "sales"))


def test_refresh_time_limit_comes_from_settings(catalog: Registered) -> None:
    assert catalog.process_actor.options["time_limit"] == 600_000  # catalog.refresh_time_limit_seconds
