"""Bounded counts (the dashboard's): exact up to the cap, PostgreSQL's estimate above it, marked."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from actors.orders.models import ORDERS_DUE, Order
from backlane.db.claims import ESTIMATED, bounded_counts, status_counts
from backlane.db.engine import Database
from backlane.db.migrate import upgrade
from devtools.sample import create_orders


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
