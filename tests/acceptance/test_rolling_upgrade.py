"""A rolling upgrade with orders in flight: the previous release (version N-1, the commit
devtools/upgrade_from names) and this checkout (version N) at once, across a migration.

The database starts at N-1's schema (migrated by N-1's alembic), N-1's worker and clock place
orders at a slowed order API; this checkout's ``backlane migrate`` runs while they do; N-1 goes
on settling orders on the new schema, and an N-1 worker started now (a supervisor restarting
one mid-rollout) boots on it; N's worker starts; both N-1 workers get SIGTERM with orders
in flight (theirs, and their status checks waiting in ``orders.DQ``, written by N-1 and run by
N); N-1's clock is replaced by N's. Every order is placed exactly once, none is lost, nothing
is dead-lettered.

N-1 runs with this checkout's interpreter and dependencies, its own tree first on the path
(:mod:`devtools.upgrade`). A clone without N-1's commit (shallow) fails with the fix; it never
skips. docs/upgrades.md has the rules this holds to and the procedure it follows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pytest import TempPathFactory
from sqlalchemy import func, select

from actors.orders.models import Order
from backlane.db.engine import Database
from backlane.db.schema import schema_state
from devtools.stack import ManagedProcess, Stack
from devtools.upgrade import MissingHistory, extract, previous_release
from tests.acceptance.conftest import System, _purge_all, stack_env
from tests.waiting import wait_until

ORDERS = 60


@pytest.fixture(scope="module")
def previous(tmp_path_factory: TempPathFactory) -> Path:
    """Version N-1's tree."""
    commit = previous_release()
    try:
        return extract(commit, tmp_path_factory.mktemp("previous") / commit[:12])
    except MissingHistory as missing:
        pytest.fail(str(missing), pytrace=False)


def _old(system: System, tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python *args`` as version N-1 (its tree first on the path, and the working directory)."""
    env = {**os.environ, **system.stack.env, "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


#: N-1's own sample data: its orders written by its code and its model, as its release would.
_CREATE_ORDERS = """
import sys
from backlane.core.clock import SystemClock
from backlane.db.engine import Database
from devtools.sample import create_orders
db = Database(sys.argv[1])
print(len(create_orders(db, int(sys.argv[2]), SystemClock().now())))
db.dispose()
"""


@pytest.fixture
def old_system(rabbitmq: object, database_url: str, previous: Path, tmp_path: Path) -> Iterator[System]:
    """The system as N-1 left it: its schema, its queues, its orders (nothing of N has run yet)."""
    stack = Stack(tmp_path / "logs", stack_env(rabbitmq, database_url, BACKLANE_ORDERS__STATUS_POLL_SECONDS="0.2"))
    _, sim_url = stack.start_simulator()
    stack.env["BACKLANE_ORDERS__BASE_URL"] = sim_url
    db = Database(database_url)
    system = System(stack, db, sim_url, rabbitmq)
    try:
        _ok(_old(system, previous, "-m", "backlane.cli", "migrate"))
        _ok(_old(system, previous, "-m", "backlane.cli", "declare-queues"))
        _purge_all(rabbitmq)
        yield system
    finally:
        stack.stop_all(timeout=15)
        _purge_all(rabbitmq)
        db.dispose()


def _booted(worker: ManagedProcess) -> bool:
    assert worker.alive, worker.log_tail(60)
    return "is ready for action" in worker.log_tail(400)


def _dead_letters(system: System) -> dict[str, int]:
    queues = httpx.get(f"{system.rabbitmq.management_url}/api/queues", auth=("guest", "guest"), timeout=10).json()
    return {q["name"]: q["messages"] for q in queues if q["name"].endswith(".XQ") and q["messages"]}


def _statuses(db: Database) -> dict[str, int]:
    with db.transaction() as session:
        return dict(session.execute(select(Order.status, func.count()).group_by(Order.status)).all())  # type: ignore[arg-type]


#: PostgreSQL, production's database, in every run (CI time); SQLite too with BACKLANE_TEST_BY_HAND=1.
@pytest.mark.parametrize(
    "database_url", ["postgresql", pytest.param("sqlite", marks=pytest.mark.by_hand)], indirect=True
)
def test_previous_release_and_this_one_across_a_migration(old_system: System, previous: Path) -> None:
    system = old_system
    url = system.stack.env["BACKLANE_DATABASE__URL"]
    before = schema_state(url)
    assert not before.ok, f"N-1's schema must be behind this checkout's ({before.revision}): nothing to cross"
    where = _ok(
        _old(system, previous, "-c", "import backlane, actors, scheduler; print(backlane.__file__, actors.__file__)")
    )
    assert all(Path(f).is_relative_to(previous) for f in where.split()), f"N-1's code must come from its tree: {where}"
    assert _ok(_old(system, previous, "-c", _CREATE_ORDERS, url, str(ORDERS))).strip() == str(ORDERS)

    # N-1 at work: its worker and its clock, orders in flight at a slow order API.
    system.sim("/_admin/config", {"latency_ms": 300})
    old = system.stack.start_worker(processes=1, threads=4, source=previous)
    old_clock = system.stack.start_clock(source=previous)
    wait_until(lambda: _booted(old), timeout=60, what="N-1's worker booted")
    _ok(_old(system, previous, "-m", "backlane.cli", "trigger", "orders"))
    wait_until(lambda: system.sim("/_admin/stats")["orders"]["created"] >= 4, timeout=30, what="N-1 placing orders")

    # N's migration while N-1 runs.
    _ok(system.cli("migrate"))
    assert schema_state(url).ok, schema_state(url)

    # N-1 against N's schema: it goes on settling orders, and a restarted N-1 worker boots on it.
    settled = system.settled()
    assert settled < ORDERS, "orders must be in flight across the migration"
    wait_until(lambda: system.settled() >= settled + 4, timeout=30, what="N-1 settling orders on the new schema")
    system.sim("/_admin/config", {"latency_ms": 1500})  # hold orders in flight while N boots
    restarted = system.stack.start_worker(processes=1, threads=2, source=previous)
    new = system.stack.start_worker(processes=1, threads=4)
    wait_until(lambda: _booted(restarted) and _booted(new), timeout=60, what="N-1's restarted worker and N's booted")
    wait_until(
        lambda: system.sim("/_admin/stats")["orders"]["created"] >= settled + 12, timeout=30, what="all three working"
    )

    # N-1 stopped with orders in flight.
    at_stop = system.settled()
    assert at_stop < ORDERS, "N-1 must be stopped with orders in flight"
    assert old.proc is not None and restarted.proc is not None
    for worker in (old, restarted):
        worker.stop()
    assert (old.proc.returncode, restarted.proc.returncode) == (0, 0), old.log_tail(60) + restarted.log_tail(60)
    system.sim("/_admin/config", {"latency_ms": 20})
    # Then the clock: N's may tick actors N-1's workers do not know (docs/upgrades.md).
    old_clock.stop()  # periodiq ends on the signal itself (status -15): it holds no work
    assert not old_clock.alive
    clock = system.stack.start_clock()
    wait_until(lambda: "Scheduling Actor(discover_orders)" in clock.log_tail(400), timeout=30, what="N's clock ticking")

    wait_until(lambda: system.settled() == ORDERS, timeout=60, what="every order settled by N's worker")
    assert system.creations() == [1] * ORDERS
    assert _statuses(system.db) == {"succeeded": ORDERS}
    assert _dead_letters(system) == {}
    assert new.alive and clock.alive, new.log_tail(60) + clock.log_tail(60)
    assert "signature" not in new.log_tail(2000), new.log_tail(60)
