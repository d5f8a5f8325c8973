"""Pause, resume and cancel on the real processes: two workers, the clock, the simulator."""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from actors.orders.models import Order
from tests.acceptance.conftest import System
from tests.waiting import wait_until

#: Both sides of every pause: how often the processes read the controls, and the longest wait
#: of a paused item before it looks again (so a resume is seen within about that long).
FAST_CONTROLS = {"BACKLANE_CONTROLS__REFRESH_SECONDS": "0.5", "BACKLANE_CONTROLS__PAUSED_RECHECK_SECONDS": "2"}


#: Orders of the pause test: 600 in CI; the issue's 2,000 with BACKLANE_TEST_PAUSE_ORDERS=2000.
ORDERS = int(os.environ.get("BACKLANE_TEST_PAUSE_ORDERS", "600"))


def _placements(system: System) -> int:
    """Orders the order API created so far (each request id's first POST)."""
    by_key = system.sim("/_admin/stats")["orders"]["by_key"]
    return sum(min(1, entry.get("creations", 0)) for entry in by_key.values())


def _dead_letters(system: System, queue: str) -> int:
    found = httpx.get(
        f"{system.rabbitmq.management_url}/api/queues/%2F/{queue}.XQ", auth=("guest", "guest"), timeout=10
    ).json()
    return int(found.get("messages", 0))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # CI time: the pause is the database's
def test_pausing_orders_mid_run_stops_every_process_within_seconds_and_resume_places_each_once(
    system: System,
) -> None:
    total = ORDERS
    # One tick claims them all (the default 500 a tick would leave the rest for the next minute's).
    system.stack.env.update(FAST_CONTROLS, BACKLANE_ORDERS__MAX_ITEMS=str(total))
    system.sim("/_admin/config", {"latency_ms": 150})  # about 100 placements a second: the pause lands mid-run
    system.create_orders(total)
    system.stack.start_worker(processes=1, threads=8)
    system.stack.start_worker(processes=1, threads=8)
    system.stack.start_clock()  # sends discover_orders when it starts, and every minute
    wait_until(lambda: _placements(system) >= min(150, ORDERS // 5), timeout=90, what="the run under way")

    paused = system.cli("pause", "orders", "--reason", "the order API misbehaves")
    assert paused.returncode == 0, paused.stderr
    assert "orders paused" in paused.stdout
    at_pause = time.monotonic()
    # Placements stop: none for 2 s in a row, and that quiet starts within 5 s of the pause.
    last, last_change = _placements(system), time.monotonic()
    while time.monotonic() - last_change < 2.0:
        now_placed = _placements(system)
        if now_placed != last:
            last, last_change = now_placed, time.monotonic()
        assert last_change - at_pause < 5.0, f"orders still placed {last_change - at_pause:.1f} s after the pause"
        time.sleep(0.1)
    stopped_at = _placements(system)
    assert stopped_at < total, "the pause must come mid-run"
    status = system.cli("status")
    assert "paused by cli:" in status.stdout, status.stdout
    time.sleep(1.0)
    assert _placements(system) == stopped_at, "a paused pipeline places nothing, on any process"

    resumed = system.cli("resume", "orders")
    assert resumed.returncode == 0 and "orders resumed" in resumed.stdout, resumed.stderr
    wait_until(lambda: system.settled() == total, timeout=180, what="every order placed after the resume")
    assert system.creations() == [1] * total
    assert _dead_letters(system, "orders") == 0
    trail = system.cli("audit").stdout
    assert " pause " in trail and " resume " in trail and "cli:" in trail


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # CI time; the pause test runs on PostgreSQL
def test_a_cancelled_order_is_never_placed_though_its_message_was_queued(system: System) -> None:
    system.stack.env.update(FAST_CONTROLS)
    system.sim("/_admin/config", {"latency_ms": 250})  # one thread places the 12 in order, 0.25 s each
    ids = system.create_orders(12)
    cancelling = [str(i) for i in ids[-4:]]
    assert system.cli("trigger", "orders").returncode == 0  # discover queues all 20 at the first run
    system.stack.start_worker(processes=1, threads=1)
    wait_until(lambda: _claimed(system) == 12, timeout=60, what="discover's claim of all 12 (their messages queued)")
    answer = system.cli("cancel", "orders", *cancelling, "--reason", "duplicate found by the business")
    assert answer.returncode == 0, answer.stderr
    assert "cancelled 4 of 4" in answer.stdout, answer.stdout
    wait_until(lambda: system.settled() == 8, timeout=60, what="the other 8 orders placed")
    wait_until(lambda: _queued(system, "orders") == 0, timeout=30, what="the cancelled orders' messages worked")
    rows = _orders(system)
    placed_keys = {
        key for key, value in system.sim("/_admin/stats")["orders"]["by_key"].items() if value.get("creations")
    }
    for order_id in map(int, cancelling):
        status, reason, request_id = rows[order_id]
        assert status == "cancelled"
        assert reason.startswith("cancelled by cli:") and "duplicate" in reason, reason
        assert request_id not in placed_keys, f"cancelled order {order_id} was placed"
    assert len(placed_keys) == 8
    cancelled = set(map(int, cancelling))

    # Reopened, it is due again and discover places it.
    reopened = system.cli("reopen", "orders", *[str(i) for i in sorted(cancelled)])
    assert reopened.returncode == 0 and f"reopened {len(cancelled)} of" in reopened.stdout, reopened.stderr
    assert system.cli("trigger", "orders").returncode == 0
    wait_until(lambda: system.settled() == 12, timeout=60, what="the reopened orders placed")
    assert system.creations() == [1] * 12
    trail = system.cli("audit").stdout
    assert " cancel " in trail and " reopen " in trail


def _claimed(system: System) -> int:
    with system.db.transaction() as session:
        return len(list(session.scalars(select(Order.id).where(Order.lease_until.is_not(None)))))


def _queued(system: System, queue: str) -> int:
    found = httpx.get(
        f"{system.rabbitmq.management_url}/api/queues/%2F/{queue}", auth=("guest", "guest"), timeout=10
    ).json()
    return int(found.get("messages", 0))


def _orders(system: System) -> dict[int, Any]:
    with system.db.transaction() as session:
        return {
            row.id: (row.status, row.failure_reason, row.request_id)
            for row in session.execute(select(Order.id, Order.status, Order.failure_reason, Order.request_id))
        }
