"""The catalog through real processes: two workers (separate OS processes), the
simulator as its own process with the provider's real limit (2 requests an hour),
one shared clock file moving time for all of them, RabbitMQ and a real database.

Proves that the rate limit and the server's "wait for X seconds" hold across
processes: the simulator counts every request to the catalog endpoint, including
those it refused.
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

from backlane.core.clock import FileClock, as_utc
from backlane.db.engine import Database
from backlane.db.migrate import upgrade
from backlane.db.models import CatalogSection, RateLimitRow
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
    _, sim_url = stack.start_simulator(None, "--rate-limit", "catalog=2/3600")
    stack.env["BACKLANE_CATALOG__BASE_URL"] = sim_url
    db = Database(database_url)
    system = CatalogSystem(stack, db, FileClock(clock_file), sim_url)
    system.cli("declare-queues")
    _purge_all(rabbitmq)
    yield system
    stack.stop_all(timeout=15)
    _purge_all(rabbitmq)
    db.dispose()


def test_two_workers_keep_the_provider_limit_and_honour_its_wait(catalog_system: CatalogSystem) -> None:
    system = catalog_system
    system.stack.start_worker(processes=1, threads=4)
    system.stack.start_worker(processes=1, threads=4)
    start = system.clock.now()

    # t = 0: every section refreshes once; the provider's two sections take the hour's 2 requests.
    system.drive(lambda: system.succeeded_since(start, *_ALL), "every section's first refresh")
    assert system.catalog_requests() == 2
    rows = system.sections()
    first_calls = min(as_utc(rows[n].last_success_at) for n in ("categories", "brands"))  # type: ignore[arg-type]

    # t = 31 min: categories and brands are due, but the hour's budget is spent: nobody calls.
    system.clock.advance(31 * MINUTE)
    t31 = system.clock.now()
    system.drive(
        lambda: (
            system.succeeded_since(t31, "erp_stock", "eshop_stock", "transport")
            and {system.sections()[n].last_outcome for n in ("categories", "brands")} == {"waiting"}
        ),
        "the other due sections refreshed and the provider's waiting",
    )
    system.cli("trigger", "catalog", "suppliers")  # due only in 2 hours: refreshed now on request
    system.drive(lambda: system.succeeded_since(t31, "suppliers"), "suppliers refreshed on request")
    assert system.catalog_requests() == 2
    assert "2 calls per 3600s used up" in (system.sections()["brands"].last_error or "")

    # t = 61 min: our budget is back, but the provider now counts 2 per 2 hours and says
    # "wait for X seconds": that one answer stops every worker until X has passed.
    httpx.post(f"{system.simulator_url}/_admin/config", json={"rate_limits": {"catalog": [2, 7200]}}, timeout=5)
    system.clock.advance(30 * MINUTE)
    system.drive(lambda: _held_until(system) is not None, "the provider's wait to be recorded")
    told = system.catalog_requests()
    assert told in (3, 4), "one or both sections may have called before the first 429 came back"
    held = _held_until(system)
    # The provider's window ends 2 hours after the first of its calls at t = 0.
    assert held is not None and abs((held - first_calls).total_seconds() - 120 * MINUTE) < 5
    for _ in range(3):  # more discovers, and an operator's request: still no call
        system.cli("trigger", "catalog")
        system.cli("trigger", "catalog", "brands")
        time.sleep(1)
    assert system.catalog_requests() == told

    # t = 122 min: the wait is over (and the calls of t = 61 min left the hour): both refresh.
    system.clock.advance(61 * MINUTE)
    t122 = system.clock.now()
    system.drive(lambda: system.succeeded_since(t122, "categories", "brands"), "the provider's sections again")
    assert system.catalog_requests() == told + 2
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


def _held_until(system: CatalogSystem) -> datetime | None:
    with system.db.transaction() as session:
        row = session.get(RateLimitRow, "source:catalog")
        if row is None or row.held_until is None:
            return None
        held = as_utc(row.held_until)
    return held if held > system.clock.now() else None
