"""Acceptance fixtures: the real processes an operator runs (``dramatiq actors
scheduler`` workers, ``periodiq scheduler`` clocks, the simulator), against a
private RabbitMQ node and a real database."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pika
import pika.exceptions
import pytest
from sqlalchemy import select

from actors.orders.models import Order
from backlane.core.clock import SystemClock
from backlane.db.engine import Database
from backlane.db.migrate import upgrade
from devtools.sample import create_orders
from devtools.stack import Stack


@dataclass
class System:
    stack: Stack
    db: Database
    simulator_url: str
    rabbitmq: Any

    def create_orders(self, count: int) -> list[int]:
        return create_orders(self.db, count, SystemClock().now())

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "backlane.cli", *args],
            env={**os.environ, **self.stack.env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def sim(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        if payload is None:
            return httpx.get(f"{self.simulator_url}{path}", timeout=10).json()
        return httpx.post(f"{self.simulator_url}{path}", json=payload, timeout=10).json()

    def settled(self) -> int:
        with self.db.transaction() as session:
            return len(list(session.scalars(select(Order.id).where(Order.status.in_(["succeeded", "failed"])))))

    def creations(self) -> list[int]:
        by_key = self.sim("/_admin/stats")["orders"]["by_key"]
        with self.db.transaction() as session:
            keys = list(session.scalars(select(Order.request_id)))
        return [by_key.get(k, {}).get("creations", 0) for k in keys]


def stack_env(rabbitmq: Any, database_url: str, **extra: str) -> dict[str, str]:
    """What every process of a test system shares: the test broker and database, fast retries."""
    return {
        "BACKLANE_BROKER__URL": rabbitmq.amqp_url,
        "BACKLANE_BROKER__MANAGEMENT_URL": rabbitmq.management_url,
        "BACKLANE_DATABASE__URL": database_url,
        "BACKLANE_RETRIES__MIN_BACKOFF_MS": "100",
        "BACKLANE_RETRIES__MAX_BACKOFF_MS": "1000",
        "BACKLANE_WORKER__METRICS_PORT": "0",
        **extra,
    }


@pytest.fixture
def system(rabbitmq: Any, database_url: str, tmp_path: Path) -> Iterator[System]:
    upgrade(database_url)
    stack = Stack(tmp_path / "logs", stack_env(rabbitmq, database_url, BACKLANE_ORDERS__STATUS_POLL_SECONDS="0.2"))
    _, sim_url = stack.start_simulator()
    stack.env["BACKLANE_ORDERS__BASE_URL"] = sim_url
    db = Database(database_url)
    system = System(stack, db, sim_url, rabbitmq)
    assert system.cli("declare-queues").returncode == 0
    _purge_all(rabbitmq)
    yield system
    stack.stop_all(timeout=15)
    _purge_all(rabbitmq)
    db.dispose()


def _purge_all(rabbitmq: Any) -> None:
    """Empty every queue on the node: listed by the management API, purged over one AMQP channel
    (a DELETE of each queue's contents through the API took a second per test for ~50 queues)."""
    queues = httpx.get(
        f"{rabbitmq.management_url}/api/queues",
        params={"columns": "name,exclusive"},
        auth=("guest", "guest"),
        timeout=10,
    ).json()
    with contextlib.closing(pika.BlockingConnection(pika.URLParameters(rabbitmq.amqp_url))) as connection:
        channel = connection.channel()
        for queue in queues:
            if queue.get("exclusive"):
                continue  # another connection's own queue: not ours to empty, and refused
            try:
                channel.queue_purge(queue["name"])
            except pika.exceptions.ChannelClosedByBroker:  # deleted since the listing
                channel = connection.channel()
