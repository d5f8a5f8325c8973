"""Bounded counts (the dashboard's and `backlane status`'): exact up to the cap, PostgreSQL's estimate
above it, marked."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from actors.orders.models import ORDERS_DUE, Order
from backlane.core.registry import REGISTRY
from backlane.db.claims import ESTIMATED, bounded_counts, status_counts
from backlane.db.engine import Database
from backlane.db.migrate import upgrade
from backlane.operations.status import collect_status, estimate, render
from devtools.sample import create_orders
from tests.integration.conftest import App


def test_counts_above_the_cap_are_the_planners_estimate(fresh_postgres_url: str) -> None:
    upgrade(fresh_postgres_url)
    db = Database(fresh_postgres_url)
    now = datetime.now(UTC)
    create_orders(db, 2000, now, status="succeeded")
    create_orders(db, 5, now)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE orders"))

    def counts() -> dict[str, object]:
        with db.transaction() as session:
            done, failed = Order.status == "succeeded", Order.status == "failed"
            return status_counts(session, Order, due=ORDERS_DUE, done=done, failed=failed, now=now)

    assert counts() == {"due": 5, "in_flight": 0, "done": 2000, "failed": 0}  # exact: no cap
    with bounded_counts(100):
        bounded = counts()
    assert bounded[ESTIMATED] == ["done"]
    assert bounded["due"] == 5 and bounded["failed"] == 0
    assert 1500 <= int(bounded["done"]) <= 2500  # type: ignore[call-overload]
    db.dispose()


def test_status_bounds_its_counts_and_marks_the_estimates(app: App) -> None:
    """`backlane status` over a large table costs what it costs over a small one: past the limit
    a count is PostgreSQL's estimate, shown ≈ (``--exact``, no limit, counts every row)."""
    now = app.clock.now()
    create_orders(app.db, 2000, now, status="succeeded")
    create_orders(app.db, 5, now)
    postgres = app.db.engine.dialect.name == "postgresql"
    if postgres:
        with app.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE orders"))

    bounded = collect_status(REGISTRY, app.runtime, only="orders", count_limit=100)
    items = bounded["pipelines"][0]["items"]
    assert items["due"] == 5 and items["failed"] == 0
    if postgres:
        assert items[ESTIMATED] == ["done"] and 1500 <= items["done"] <= 2500
        assert estimate(items["done"]) in render(bounded)
    else:  # SQLite always counts
        assert ESTIMATED not in items and items["done"] == 2000

    exact = collect_status(REGISTRY, app.runtime, only="orders")["pipelines"][0]["items"]
    assert ESTIMATED not in exact and exact["done"] == 2000


def test_an_estimate_fits_its_column() -> None:
    assert [estimate(n) for n in (950, 1_987, 120_400, 9_012_345, 10_000_000, 2_500_000_000)] == [
        "≈950",
        "≈2.0k",
        "≈120k",
        "≈9.0M",
        "≈10M",
        "≈2.5G",
    ]
