"""The state gauges the worker's /metrics reads when scraped, on real RabbitMQ and a real
database: a breaker's state and failures in a row from its shared row, each pipeline's health
rows, each queue's ready messages (a queue not declared yet left out, the ones after it still
read)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from backlane.core.registry import REGISTRY
from backlane.messaging.queues import declare_all
from backlane.operations.endpoint import build_server
from backlane.operations.health import BrokerProbe
from backlane.resilience.breaker import CircuitBreaker
from devtools.infra.ports import free_port
from tests.integration.conftest import App

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def metrics_url(app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    counters = tmp_path / "metrics"  # the counters' files (none here), apart from the SQLite file
    counters.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(counters))
    settings = app.runtime.settings
    broker = settings.broker.model_copy(update={"url": SecretStr(app.rabbitmq.amqp_url)})
    worker = settings.worker.model_copy(
        update={"metrics_port": free_port(), "metrics_host": "127.0.0.1", "metrics_cache_seconds": 0.0}
    )
    app.runtime.settings = settings.model_copy(update={"broker": broker, "worker": worker})
    server = build_server(REGISTRY, app.runtime)
    assert server is not None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{worker.metrics_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        server.endpoint.close()


def _values(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    answer = httpx.get(url, timeout=30)
    assert answer.status_code == 200, answer.text
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@SQLITE
def test_metrics_serve_breakers_health_rows_and_queue_depths(app: App, metrics_url: str) -> None:
    declare_all(app.broker)
    orders = REGISTRY.get("orders").process_actor
    app.broker.enqueue_many([orders.message(item) for item in (101, 102)])
    breaker = CircuitBreaker(app.db, app.clock, "product_api", failure_threshold=3, open_seconds=30)
    for _ in range(3):
        breaker.record_failure("503 Service Unavailable")

    values = _values(metrics_url)
    assert values["backlane_breaker_open"][(("breaker", "product_api"),)] == 1
    assert values["backlane_breaker_consecutive_failures"][(("breaker", "product_api"),)] == 3
    ready = {dict(labels)["queue"]: value for labels, value in values["backlane_queue_messages_ready"].items()}
    assert ready["orders"] == 2 and ready["orders.XQ"] == 0 and "orders.DQ" in ready and "discover" in ready
    rows = values["backlane_health_row"]
    pipelines = {dict(labels)["pipeline"] for labels in rows}
    assert "catalog" in pipelines
    for pipeline, row in {(dict(k)["pipeline"], dict(k)["row"]) for k in rows}:
        reported = [
            dict(k)["health"]
            for k, v in rows.items()
            if v == 1 and (dict(k)["pipeline"], dict(k)["row"]) == (pipeline, row)
        ]
        assert len(reported) == 1, (pipeline, row, reported)

    breaker.record_success()  # the trial call after the open period, as it were
    assert _values(metrics_url)["backlane_breaker_open"][(("breaker", "product_api"),)] == 0


@SQLITE
def test_a_queue_not_declared_is_left_out_and_the_rest_still_read(app: App) -> None:
    declare_all(app.broker)
    probe = BrokerProbe(app.rabbitmq.amqp_url)
    try:
        depths = probe.queue_depths(["orders", "no_such_queue", "orders.XQ", "another_missing", "discover"])
        assert set(depths) == {"orders", "orders.XQ", "discover"}
        assert probe.queue_depths(["orders"]) == {"orders": depths["orders"]}
        assert probe.connects == 1, "a 404 closes a channel, not the connection"
    finally:
        probe.close()


def test_an_unreachable_broker_gives_no_depths() -> None:
    probe = BrokerProbe(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", timeout=1.0)
    assert probe.queue_depths(["orders"]) == {}
