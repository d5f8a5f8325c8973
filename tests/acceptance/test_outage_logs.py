"""A database outage under a real worker: a traceback per failure kind per interval, not per attempt.

On the code before backlane/core/log_repeats.py, an outage like the one below (6 s) wrote an outcome
line ("waiting", database unavailable) and Dramatiq's "Retrying message …" line for every
attempt of every thread: about 540 of each here (a 3-minute outage: 60,508 lines).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import System
from tests.waiting import wait_until


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_database_outage_is_a_few_lines_and_loses_nothing(system: System, postgres: Any) -> None:
    if not hasattr(postgres, "stop"):
        pytest.fail("this test stops PostgreSQL: run it against the private server the tests start")
    system.sim("/_admin/config", {"latency_ms": 300})  # the run outlasts the outage
    system.create_orders(120)
    worker = system.stack.start_worker(processes=1, threads=8)
    assert system.cli("trigger", "orders").returncode == 0
    wait_until(lambda: system.settled() >= 10, timeout=60, what="the run under way")
    before = len(worker.log_path.read_text(errors="replace").splitlines())

    retries_before = _retries_scheduled(system)
    postgres.stop()
    # Every thread fails every message it takes, many times over: 100 retries scheduled.
    wait_until(lambda: _retries_scheduled(system) >= retries_before + 100, timeout=60, what="100 retries in the outage")
    postgres.start()
    # The test's own pooled connection died with the server; one returned under a second ago is
    # not pinged (backlane/db/engine.py), so drop the pool rather than fail the first poll.
    system.db.dispose()

    wait_until(lambda: system.settled() == 120, timeout=120, what="every order placed after the outage")
    assert system.creations() == [1] * 120
    written = worker.log_path.read_text(errors="replace").splitlines()[before:]
    lines = [line for line in written if "HTTP Request" not in line]
    away = [line for line in lines if '"error_class":"unavailable"' in line]
    retrying = [line for line in lines if "Retrying message" in line]
    # One line per kind per minute: a kind per reason (refused, shutting down, starting up, ...).
    reasons = {line.split('"reason":', 1)[1].split(',"retry_in_s"')[0] for line in away}
    assert away, "the outage must have caught orders in flight"
    assert len(away) == len(reasons) <= 8, "\n".join(away[:40])
    assert len(retrying) <= 2, "\n".join(retrying[:40])
    assert sum(1 for line in lines if line.startswith("Traceback")) <= 4, "\n".join(lines[:200])


def _retries_scheduled(system: System) -> int:
    """Messages published to the orders' delay queue so far (a retry each), per RabbitMQ's stats."""
    queue = httpx.get(
        f"{system.rabbitmq.management_url}/api/queues/%2F/orders.DQ", auth=("guest", "guest"), timeout=10
    ).json()
    return int(queue.get("message_stats", {}).get("publish", 0))
