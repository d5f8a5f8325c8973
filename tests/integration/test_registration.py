"""The registration mechanism on the real broker: limits, isolation between pipelines,
unroutable publishing."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from backlane.core.discovery import declare_discover_actors, discover
from backlane.core.pipeline import Context, Pipeline, Purpose
from backlane.core.registry import REGISTRY, Registered, register
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.waiting import wait_until

PROBE_LIMIT = 7
processed: dict[str, list[Any]] = {"probe": [], "probe_twin": []}
processed_at: dict[str, float] = {}
_lock = threading.Lock()


def probe_fetch(ctx: Context, limit: int) -> list[int]:
    return list(range(3 * limit))  # a fetch that ignores its limit


def probe_process(ctx: Context, item: Any) -> None:
    with _lock:
        processed[ctx.pipeline.name].append(item)
        processed_at.setdefault(ctx.pipeline.name, time.monotonic())


def _probe(name: str, limit: int) -> Pipeline:
    return Pipeline(
        name=name,
        purpose=Purpose.INTERNAL,
        defaults={"max_items": limit, "tick": "*/5 * * * *"},
        fetch=probe_fetch,
        process=probe_process,
        description="test probe",
    )


@pytest.fixture(scope="module")
def probes(app_broker: Any) -> Iterator[dict[str, Registered]]:
    """The same handler registered twice, under two names with two limits (unregistered after)."""
    registered = {
        "probe": register(_probe("probe", PROBE_LIMIT)),
        "probe_twin": register(_probe("probe_twin", 2 * PROBE_LIMIT)),
    }
    declare_discover_actors(REGISTRY)
    yield registered
    for name in registered:
        REGISTRY.unregister(name)


@pytest.fixture(autouse=True)
def _reset() -> None:
    for items in processed.values():
        items.clear()
    processed_at.clear()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_fetch_returning_three_times_its_limit_processes_exactly_the_limit(
    probes: dict[str, Registered], app: App, worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="backlane.discover"):
        result = discover(probes["probe"])

    assert (result.enqueued, result.cut) == (PROBE_LIMIT, 2 * PROBE_LIMIT)
    assert any("returned 21 items for a limit of 7" in r.getMessage() for r in caplog.records)
    wait_until(lambda: len(processed["probe"]) == PROBE_LIMIT, timeout=20)
    app.broker.join("probe", timeout=10_000)
    assert sorted(processed["probe"]) == list(range(PROBE_LIMIT))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_same_handler_registered_twice_keeps_its_own_queue_and_limit(
    probes: dict[str, Registered], app: App, worker: Any
) -> None:
    assert probes["probe"].pipeline.queue_name != probes["probe_twin"].pipeline.queue_name
    discover(probes["probe"])
    discover(probes["probe_twin"])
    wait_until(lambda: len(processed["probe_twin"]) == 2 * PROBE_LIMIT and len(processed["probe"]) == PROBE_LIMIT)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_flood_of_orders_does_not_delay_another_pipelines_tick(
    probes: dict[str, Registered], app: App, worker: Any
) -> None:
    app.simulator.configure(latency_ms=20)
    create_orders(app.db, 10_000, app.clock.now())
    app.configure("orders", max_items=10_000)
    flood = discover(REGISTRY.get("orders"))
    assert flood.enqueued == 10_000
    wait_until(lambda: app.sim_stats()["requests"].get("orders.create", 0) > 50, what="the flood being worked on")

    sent = time.monotonic()
    probes["probe"].discover_actor.send()  # type: ignore[union-attr]
    wait_until(lambda: len(processed["probe"]) == PROBE_LIMIT, timeout=20, what="the probe pipeline's items")
    latency = processed_at["probe"] - sent

    ready, _delayed, _dead = app.queue_counts("orders")
    assert ready > 5_000, "the orders backlog must still be there"
    assert latency < 2.0, f"the probe waited {latency:.2f}s behind the flood"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_deleted_queue_is_declared_again_and_nothing_is_dropped(probes: dict[str, Registered], app: App) -> None:
    rabbit = app.rabbitmq
    deleted = httpx.delete(f"{rabbit.management_url}/api/queues/%2F/probe", auth=("guest", "guest"), timeout=10)
    assert deleted.status_code == 204

    result = discover(probes["probe"])

    assert result.enqueued == PROBE_LIMIT
    ready, _delayed, _dead = app.queue_counts("probe")
    assert ready == PROBE_LIMIT, "every message must have reached the re-declared queue"
