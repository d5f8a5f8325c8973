"""One retry count per item, on the real broker and database (issue 10, defect 1).

Before: every backlane retry also raised Dramatiq's own count, so a database outage
made Dramatiq give up first and dead-letter orders whose rows stayed pending.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from backlane.core.discovery import discover
from backlane.core.registry import REGISTRY
from backlane.db.migrate import upgrade
from contracts.orders import ORDER_CREATED_QUEUE, OrderCreated
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.integration.test_orders_pipeline import creations_per_order, dead_letters, publish_raw, statuses
from tests.waiting import wait_until


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_database_outage_longer_than_the_retry_budget_dead_letters_nothing(
    app: App, worker: Any, postgres: Any
) -> None:
    if not hasattr(postgres, "stop"):
        pytest.fail("this test stops PostgreSQL: run it against the private server the tests start")
    app.configure("orders", max_retries=2)  # the whole budget is spent in about a second
    app.simulator.configure(latency_ms=30)
    total = 150
    create_orders(app.db, total, app.clock.now())
    discover(REGISTRY.get("orders"))
    wait_until(lambda: statuses(app)["succeeded"] >= 10, timeout=60, what="the run under way")

    postgres.stop()
    time.sleep(6)  # several whole retry budgets
    postgres.start()

    wait_until(lambda: statuses(app)["succeeded"] == total, timeout=120, what="every order placed")
    assert statuses(app) == Counter({"succeeded": total})
    assert creations_per_order(app) == [1] * total
    assert dead_letters(app, "orders") == []


def test_a_requeued_order_created_gets_a_fresh_grace_period(app: App, worker: Any, tmp_path: Path) -> None:
    app.configure("orders", created_grace_seconds=3.0, created_recheck_seconds=0.2)
    assert not statuses(app), "a fresh database: the first order gets id 1"
    publish_raw(app, json.dumps(OrderCreated(version=1, order_id=1).envelope()).encode())
    # The first life: the grace period runs out and the message is dead-lettered.
    wait_until(lambda: dead_letters(app, ORDER_CREATED_QUEUE), timeout=30, what="the first dead letter")

    # requeue --all runs as a job kept in the command's database: its default file in tmp_path (the
    # test's own on SQLite), migrated; the default URL is also what the worker derives its signing key from.
    upgrade(f"sqlite:///{tmp_path / 'backlane.db'}")
    requeued = subprocess.run(
        [sys.executable, "-m", "backlane.cli", "dead-letters", "requeue", "--all", "--queue", ORDER_CREATED_QUEUE],
        env=dict(os.environ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert requeued.returncode == 0, requeued.stderr
    time.sleep(1.0)  # the row lands after the requeue, well inside a fresh grace period
    create_orders(app.db, 1, app.clock.now())

    wait_until(lambda: statuses(app)["succeeded"] == 1, timeout=30, what="the late order placed")
    assert creations_per_order(app) == [1]
    assert dead_letters(app, ORDER_CREATED_QUEUE) == []
