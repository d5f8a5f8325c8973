"""The catalog through real processes: two workers (separate OS processes), the
simulator as its own process with the provider's real limits (its catalog endpoint,
brands, 2 requests an hour; its categories endpoint limited on its own), one shared
clock file moving time for all of them, RabbitMQ and a real database.

Proves that each endpoint's rate limit and the server's "wait for X seconds" hold
across processes, and independently: brands refresh every 30 minutes and never wait,
whatever categories' budget. The simulator counts every request, refused ones included.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from actors.catalog.models import CatalogSection
from backlane.core.clock import FileClock, as_utc
from backlane.db.engine import Database
from backlane.db.migrate import upgrade
from backlane.db.models import RateLimitRow
from devtools.stack import Stack
from tests.acceptance.conftest import _purge_all, stack_env

MINUTE = 60.0


@dataclass
class CatalogSystem:
    stack: Stack
    db: Database
    clock: FileClock
    simulator_url: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "backlane.cli", *args],
            env={**os.environ, **self.stack.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result

    def sections(self) -> dict[str, CatalogSection]:
        with self.db.transaction() as session:
            return {row.name: row for row in session.scalars(select(CatalogSection))}

    def requests(self, section: str) -> int:
        return int(httpx.get(f"{self.simulator_url}/_admin/stats", timeout=5).json()["requests"].get(section, 0))

    def refused(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.simulator_url}/_admin/stats", timeout=5).json()["rate_limited"])

    def catalog_requests(self) -> int:
        """Every request the simulator got on the catalog endpoint, refused ones included."""
        requests = httpx.get(f"{self.simulator_url}/_admin/stats", timeout=5).json()["requests"]
        return requests.get("catalog.categories", 0) + requests.get("catalog.brands", 0)

    def drive(self, done: Callable[[], bool], what: str, timeout: float = 120) -> None:
        """Run discover (as `backlane trigger catalog` does) until ``done``."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                logs = "\n".join(p.log_tail(40) for p in self.stack.processes if p.name.startswith("worker"))
                raise AssertionError(f"timed out waiting for {what}; sections: {self.summary()}\n{logs}")
            self.cli("trigger", "catalog")
            time.sleep(0.5)

    def summary(self) -> dict[str, Any]:
        return {n: (r.last_outcome, r.last_error) for n, r in self.sections().items()}

    def succeeded_since(self, since: datetime, *names: str) -> bool:
        rows = self.sections()
        return all(
            n in rows and rows[n].last_success_at is not None and as_utc(rows[n].last_success_at) >= since
            for n in names
        )


@pytest.fixture
def catalog_system(rabbitmq: Any, database_url: str, tmp_path: Path) -> Iterator[CatalogSystem]:
    upgrade(database_url)
    clock_file = tmp_path / "clock"
    clock_file.write_text("0")
    # Workers, CLI and simulator share one time through the clock file.
    stack = Stack(tmp_path / "logs", stack_env(rabbitmq, database_url, BACKLANE_CLOCK_FILE=str(clock_file)))
    _, sim_url = stack.start_simulator(None, "--rate-limit", "catalog=2/3600", "--rate-limit", "categories=2/3600")
    stack.env["BACKLANE_CATALOG__BASE_URL"] = sim_url
    db = Database(database_url)
    system = CatalogSystem(stack, db, FileClock(clock_file), sim_url)
    system.cli("declare-queues")
    _purge_all(rabbitmq)
    yield system
    stack.stop_all(timeout=15)
    _purge_all(rabbitmq)
    db.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # the limits live in RabbitMQ, not the database
def test_two_workers_keep_each_endpoint_limit_apart_and_honour_its_wait(catalog_system: CatalogSystem) -> None:
    system = catalog_system
    system.stack.start_worker(processes=1, threads=4)
    system.stack.start_worker(processes=1, threads=4)
    start = system.clock.now()
    brands_outcomes: list[str | None] = []

    def brands_ok(since: datetime) -> None:
        row = system.sections()["brands"]
        brands_outcomes.append(row.last_outcome)
        assert row.last_error is None and system.succeeded_since(since, "brands"), system.summary()

    # t = 0: every section refreshes once; brands and categories each take one of their own budget.
    system.drive(lambda: system.succeeded_since(start, *_ALL), "every section's first refresh")
    assert (system.requests("catalog.brands"), system.requests("catalog.categories")) == (1, 1)
    brands_ok(start)
    first_categories = as_utc(system.sections()["categories"].last_success_at or start)

    # t = 31 min: both due; 2 an hour each fits their 30-minute intervals: nobody waits.
    system.clock.advance(31 * MINUTE)
    t31 = system.clock.now()
    system.drive(lambda: system.succeeded_since(t31, "categories", "brands"), "both refreshed at 31 min")
    assert (system.requests("catalog.brands"), system.requests("catalog.categories")) == (2, 2)
    brands_ok(t31)

    # t = 62 min: the categories endpoint now counts 2 per 2 hours and says "wait for X seconds";
    # that answer holds every worker off categories, and brands does not notice.
    httpx.post(
        f"{system.simulator_url}/_admin/config",
        json={"rate_limits": {"catalog": [2, 3600], "categories": [2, 7200]}},
        timeout=5,
    )
    system.clock.advance(31 * MINUTE)
    t62 = system.clock.now()
    system.drive(
        lambda: _held_until(system, "categories") is not None and system.succeeded_since(t62, "brands"),
        "categories held, brands refreshed",
    )
    brands_ok(t62)
    held = _held_until(system, "categories")
    assert held is not None and abs((held - first_categories).total_seconds() - 120 * MINUTE) < 5
    assert _held_until(system, "catalog") is None
    told = system.requests("catalog.categories")
    assert told == 3

    # t = 93 min: categories still held (no call from any worker, whoever asks); brands refresh again.
    system.clock.advance(31 * MINUTE)
    t93 = system.clock.now()
    system.drive(lambda: system.succeeded_since(t93, "brands"), "brands refreshed at 93 min")
    for _ in range(2):
        system.cli("trigger", "catalog", "categories")
        time.sleep(1)
    brands_ok(t93)
    assert system.requests("catalog.categories") == told
    assert system.sections()["categories"].last_outcome == "waiting"

    # t = 124 min: the wait is over: categories refreshes.
    system.clock.advance(31 * MINUTE)
    t124 = system.clock.now()
    system.drive(lambda: system.succeeded_since(t124, "categories", "brands"), "both again at 124 min")
    assert system.requests("catalog.categories") == told + 1
    assert system.requests("catalog.brands") == 5
    assert system.refused().get("catalog", 0) == 0, "brands never refused by the provider"
    assert "waiting" not in brands_outcomes
    assert all(p.alive for p in system.stack.processes)


_ALL = (
    "erp_stock",
    "eshop_stock",
    "stock_taking",
    "transport",
    "lots",
    "sales",
    "consumed_materials",
    "purchase_history",
    "attributes",
    "suppliers",
    "categories",
    "brands",
)


def _held_until(system: CatalogSystem, limiter: str) -> datetime | None:
    with system.db.transaction() as session:
        row = session.get(RateLimitRow, f"limiter:{limiter}")
        if row is None or row.held_until is None:
            return None
        held = as_utc(row.held_until)
    return held if held > system.clock.now() else None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_runtime_change_of_the_catalog_limiter_holds_on_two_workers_without_a_restart(
    catalog_system: CatalogSystem,
) -> None:
    """The environment allows brands' endpoint 2 calls an hour; an operator lowers it to 1 while
    two workers run: at 31 min brands is held (on whichever worker takes it), categories is not;
    the audit trail names who changed it, and `unset` reverts to the environment's value."""
    system = catalog_system
    system.stack.env["BACKLANE_CONTROLS__REFRESH_SECONDS"] = "0.5"
    system.stack.start_worker(processes=1, threads=4)
    system.stack.start_worker(processes=1, threads=4)
    assert (
        "1 (over BACKLANE_CATALOG__LIMITERS__CATALOG__CALLS)"
        in system.cli("settings", "set", "catalog", "limiters.catalog.calls", "1").stdout
    )
    start = system.clock.now()
    system.drive(lambda: system.succeeded_since(start, "brands", "categories"), "both endpoints' first refresh")
    assert system.requests("catalog.brands") == 1

    system.clock.advance(31 * MINUTE)
    t31 = system.clock.now()
    system.drive(
        lambda: system.succeeded_since(t31, "categories") and _waiting_on_own_limit(system, "brands"),
        "categories refreshed and brands held by its lowered limit",
    )
    for _ in range(3):  # whichever worker takes it, nobody calls brands' endpoint again this hour
        system.cli("trigger", "catalog", "brands")
        time.sleep(0.5)
    assert (system.requests("catalog.brands"), system.requests("catalog.categories")) == (1, 2)
    assert system.refused().get("catalog", 0) == 0, "held by our own limit, not refused by the provider"

    assert "1 calls per 3600s used up" in (system.sections()["brands"].last_error or "")
    shown = system.cli("settings", "show", "catalog").stdout
    assert "limiters.catalog.calls" in shown and "runtime, by cli:" in shown and "over 2" in shown
    system.cli("settings", "unset", "catalog", "limiters.catalog.calls")
    line = next(x for x in system.cli("settings", "show", "catalog").stdout.splitlines() if "catalog.calls" in x)
    assert " 2 " in line and "default" in line
    trail = system.cli("audit", "--search", "limiters.catalog.calls").stdout
    assert trail.count("cli:") == 2 and " set " in trail and " unset " in trail


def _waiting_on_own_limit(system: CatalogSystem, section: str) -> bool:
    row = system.sections()[section]
    return row.last_outcome == "waiting" and "rate limit 'limiter:catalog'" in (row.last_error or "")
