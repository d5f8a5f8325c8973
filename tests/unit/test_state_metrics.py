"""The metrics the alert rules need beyond the counters: the last discover tick per pipeline
(stamped once per tick, never per item) and the state gauges the endpoint reads when scraped
(breakers, health rows, queue depths), named generically."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from backlane.core import discovery
from backlane.core.health import Health, HealthRow
from backlane.operations import metrics
from backlane.operations.single_flight import SingleFlight
from tests.waiting import wait_until


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def test_breakers_count_open_until_closed_and_their_failures_in_a_row() -> None:
    breakers = [
        {"name": "product_api", "state": "open", "consecutive_failures": 12},
        {"name": "catalog", "state": "half_open", "consecutive_failures": 3},
        {"name": "orders", "state": "closed", "consecutive_failures": 0},
    ]
    got = _samples(metrics.state_metrics(breakers, {}, {}))
    assert {k: v for k, v in got.items() if k[0] == "backlane_breaker_open"} == {
        ("backlane_breaker_open", (("breaker", "product_api"),)): 1,
        ("backlane_breaker_open", (("breaker", "catalog"),)): 1,
        ("backlane_breaker_open", (("breaker", "orders"),)): 0,
    }
    assert got[("backlane_breaker_consecutive_failures", (("breaker", "product_api"),))] == 12


def test_each_health_row_has_one_series_per_health_with_1_on_the_one_it_reports() -> None:
    rows = {
        "catalog": [HealthRow("sales", Health.DEGRADED), HealthRow("brands", Health.HEALTHY)],
        "exports": [HealthRow("product_api", None)],
    }
    got = _samples(metrics.state_metrics([], rows, {}))
    ones = {labels for (name, labels), value in got.items() if name == "backlane_health_row" and value == 1}
    assert ones == {
        (("health", "degraded"), ("pipeline", "catalog"), ("row", "sales")),
        (("health", "healthy"), ("pipeline", "catalog"), ("row", "brands")),
        (("health", "unknown"), ("pipeline", "exports"), ("row", "product_api")),
    }
    assert len([k for k in got if k[0] == "backlane_health_row"]) == 3 * len(metrics.HEALTH_STATES)


def test_queue_depths_are_ready_messages_per_queue() -> None:
    got = _samples(metrics.state_metrics([], {}, {"orders": 7, "orders.XQ": 1}))
    assert got == {
        ("backlane_queue_messages_ready", (("queue", "orders"),)): 7,
        ("backlane_queue_messages_ready", (("queue", "orders.XQ"),)): 1,
    }


def test_nothing_read_is_families_without_samples_not_zeros() -> None:
    assert _samples(metrics.state_metrics([], {}, {})) == {}


@pytest.fixture
def tick_gauge(monkeypatch: pytest.MonkeyPatch) -> Any:
    gauge = prometheus_client.Gauge(
        "backlane_discover_last_tick_timestamp_seconds",
        "",
        ["pipeline"],
        registry=prometheus_client.CollectorRegistry(),
    )
    monkeypatch.setattr(metrics, "_ticks", gauge)
    return gauge


def _registered(enabled: bool, sent: list[Any]) -> Any:
    config = SimpleNamespace(enabled=enabled, max_items=10)
    runtime = SimpleNamespace(broker=SimpleNamespace(enqueue_many=sent.extend))
    return SimpleNamespace(
        name="greetings",
        context=lambda: SimpleNamespace(config=config, runtime=runtime, paused=lambda part="": None),
        pipeline=SimpleNamespace(fetch=lambda _ctx, _limit: [1, 2, 3], dispatch=None),
        process_actor=SimpleNamespace(message=lambda item: item),
    )


def test_a_discover_tick_stamps_its_pipeline_once_whatever_it_enqueued(
    tick_gauge: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics.time, "time", lambda: 1_700_000_000.0)
    sent: list[Any] = []
    discovery.discover(_registered(True, sent))
    assert sent == [1, 2, 3]
    assert tick_gauge.labels("greetings")._value.get() == 1_700_000_000.0


def test_a_disabled_pipeline_does_not_stamp_a_tick(tick_gauge: Any) -> None:
    discovery.discover(_registered(False, []))
    assert next(iter(tick_gauge.collect())).samples == []


def test_without_a_worker_process_booted_observing_a_tick_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_ticks", None)
    metrics.observe_tick("greetings")  # no error, nothing to record into


def test_a_slow_state_reading_is_waited_for_a_bounded_time_then_serves_later_answers() -> None:
    """What /metrics does with the state gauges: a reading slower than the wait leaves them out
    of that answer (the counters never wait for the database), and its value serves the next."""
    release = threading.Event()
    calls: list[int] = []

    def read() -> bytes:
        calls.append(1)
        release.wait(10)
        return b"state\n"

    state = SingleFlight(read, ttl=60, stale=30, wait=0.2, overdue=bytes)
    started = time.monotonic()
    assert state.get_within(0.2, b"") == b""
    assert time.monotonic() - started < 2
    assert state.get_within(0.2, b"") == b"", "still reading: not a second reading"
    release.set()
    wait_until(lambda: state.computations == 1, timeout=5)
    assert state.get_within(0.2, b"") == b"state\n"
    assert len(calls) == 1


def test_a_slow_reading_after_a_good_one_serves_the_good_one_while_it_is_recent() -> None:
    release = threading.Event()
    values = iter([b"first\n", b"second\n"])

    def read() -> bytes:
        value = next(values)
        if value == b"second\n":
            release.wait(10)
        return value

    state = SingleFlight(read, ttl=0, stale=30, wait=0.2, overdue=bytes)
    assert state.get_within(1, b"") == b"first\n"
    assert state.get_within(0.2, b"") == b"first\n", "the second reading is slow: the first one, not nothing"
    release.set()
    wait_until(lambda: state.computations == 2, timeout=5)
