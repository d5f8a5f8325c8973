"""Orders through the real processes: kill -9 a worker, run two clocks, publish by hand."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests import docs
from tests.acceptance.conftest import System
from tests.waiting import wait_until


def test_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(system: System) -> None:
    system.sim("/_admin/config", {"latency_ms": 20, "failure_rate": 0.1, "seed": 5})
    system.create_orders(300)
    first = system.stack.start_worker(processes=1, threads=8)
    assert system.cli("trigger", "orders").returncode == 0

    wait_until(lambda: system.settled() >= 60, timeout=60, what="a good part of the run to settle")
    first.kill()  # SIGKILL: no chance to ack, requeue or clean up
    settled_at_kill = system.settled()
    assert settled_at_kill < 300, "the worker must be killed mid-run"

    system.stack.start_worker(processes=1, threads=8)
    wait_until(lambda: system.settled() == 300, timeout=120, what="every order settled after the restart")
    assert system.creations() == [1] * 300


def test_two_clocks_at_once_place_no_order_twice(system: System) -> None:
    system.create_orders(100)
    system.stack.start_worker(processes=1, threads=8)
    # periodiq sends every due actor when it starts: two clocks started together tick together.
    system.stack.start_clock()
    system.stack.start_clock()

    wait_until(lambda: system.settled() == 100, timeout=90, what="every order settled")
    assert system.creations() == [1] * 100
    logs = "".join(p.log_tail(400) for p in system.stack.processes if p.name.startswith("clock"))
    assert logs.count("Scheduling Actor(discover_orders)") >= 2, "both clocks must have ticked"


def _readme_wire_example() -> dict[str, Any]:
    """The exact bytes docs/interop.md tells another service to publish."""
    return json.loads(docs.block("docs/interop.md", "json", '"actor_name": "order_created"'))


def test_order_created_published_by_hand_through_the_management_api(system: System) -> None:
    """What the management UI's "Publish message" does: no Dramatiq, no Python contract."""
    [order_id] = system.create_orders(1)
    system.stack.start_worker(processes=1, threads=2)
    body = _readme_wire_example()
    body["args"][0]["order_id"] = order_id
    response = httpx.post(
        f"{system.rabbitmq.management_url}/api/exchanges/%2F/amq.default/publish",
        auth=("guest", "guest"),
        json={
            "properties": {"delivery_mode": 2, "content_type": "application/json"},
            "routing_key": "orders_inbox",
            "payload": json.dumps(body),
            "payload_encoding": "string",
        },
        timeout=10,
    )
    assert response.json() == {"routed": True}

    wait_until(lambda: system.settled() == 1, timeout=60, what="the hand-published order settled")
    assert system.creations() == [1]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_worker_and_clock_survive_a_broker_restart(system: System) -> None:
    if not getattr(system.rabbitmq, "restartable", False):
        pytest.fail("this test restarts RabbitMQ: run it against the private node the tests start")
    system.create_orders(50)
    system.stack.start_worker(processes=1, threads=4)
    clock = system.stack.start_clock()
    wait_until(lambda: system.settled() == 50, timeout=90, what="the first batch settled")

    system.rabbitmq.restart()
    system.create_orders(50)
    assert system.cli("trigger", "orders").returncode == 0  # publishing waits for the broker to be back

    wait_until(lambda: system.settled() == 100, timeout=120, what="orders after the restart settled")
    assert clock.alive, "the clock must survive the broker restart"
    assert system.creations() == [1] * 100
