"""The alert rules against the real thing: a real Prometheus server (loopback, its own port and
data directory: devtools/infra/prometheus.py) loads monitoring/prometheus/alerts.yml as shipped,
scrapes a real worker's /metrics with the scrape configuration docs/alerts.md gives, and fires
BacklaneDeadLettersGrowing once an order fails for good — and not before.

Everything the rule reads comes from the worker: the dead-letter queue's depth, read from
RabbitMQ when scraped. Prometheus scrapes and evaluates every second here, so the alert fires
within seconds; the rule itself has no ``for:`` (a dead letter is worth saying at once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from backlane.core.clock import SystemClock
from devtools.infra.ports import free_port
from devtools.infra.prometheus import PrometheusServer
from devtools.sample import create_orders
from tests import docs
from tests.acceptance.conftest import System
from tests.monitoring import RULES, prometheus
from tests.waiting import wait_until

ALERT = "BacklaneDeadLettersGrowing"


@pytest.fixture
def scraped(system: System, tmp_path: Path) -> Iterator[PrometheusServer]:
    """A worker serving /metrics on a free port, and a Prometheus scraping it with the shipped rules."""
    prometheus()  # installed, or fail naming the apt command
    port = free_port()
    system.stack.start_worker(processes=1, threads=4, extra_env={"BACKLANE_WORKER__METRICS_PORT": str(port)})
    config = yaml.safe_load(docs.block("docs/alerts.md", "yaml", "job_name: backlane-worker", "rule_files:"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(RULES)]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "backlane-worker"
    job["scrape_interval"] = "1s"
    job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    server = PrometheusServer(tmp_path / "prometheus", config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _alerts(server: PrometheusServer, name: str) -> list[dict[str, Any]]:
    return [alert for alert in server.alerts() if alert["labels"]["alertname"] == name]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_real_prometheus_fires_dead_letters_growing_when_an_order_fails_for_good(
    system: System, scraped: PrometheusServer
) -> None:
    server = scraped
    wait_until(lambda: server.query('up{job="backlane-worker"} == 1'), timeout=60, what="the worker scraped")
    # The dead-letter queue is scraped empty first: the rule compares with what it held before.
    wait_until(
        lambda: server.query('count_over_time(backlane_queue_messages_ready{queue="orders.XQ"}[1m]) >= 3'),
        timeout=30,
        what="orders.XQ scraped empty a few times",
    )
    assert server.query('backlane_queue_messages_ready{queue="orders.XQ"}')[0]["value"][1] == "0"

    system.create_orders(3)
    assert system.cli("trigger", "orders").returncode == 0
    wait_until(lambda: system.settled() == 3, timeout=60, what="the good orders settled")
    wait_until(lambda: server.query("backlane_items_total"), timeout=30, what="the outcomes scraped")
    assert _alerts(server, ALERT) == [], "no dead letter yet"

    # Every rule evaluates against the real series without an error (a bad vector match says so here).
    groups = server.api("rules")["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert len(rules) == len(yaml.safe_load(RULES.read_text())["groups"][0]["rules"])
    assert {name: rule["health"] for name, rule in rules.items() if rule["health"] != "ok"} == {}

    # An order the order API rejects for good (422: no items): failed, dead-lettered to orders.XQ.
    create_orders(system.db, 1, SystemClock().now(), payload={"items": []})
    assert system.cli("trigger", "orders").returncode == 0
    firing = wait_until(
        lambda: [a for a in _alerts(server, ALERT) if a["state"] == "firing"],
        timeout=60,
        what=f"{ALERT} firing",
    )
    assert [alert["labels"]["queue"] for alert in firing] == ["orders"]
    assert firing[0]["labels"]["severity"] == "warning"
    assert firing[0]["annotations"]["summary"] == "orders: new dead letters in the last 15 minutes"
    assert server.query('backlane_queue_messages_ready{queue="orders.XQ"}')[0]["value"][1] == "1"
    worker_logs = "".join(Path(p.log_path).read_text() for p in system.stack.processes)
    assert "/metrics: " not in worker_logs, "the state gauges were read without a warning"
