"""Operating backlane: status, dead letters, graceful shutdown, secrets."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import httpx
import pika
import pytest
from sqlalchemy import select

from actors.orders.models import Order
from contracts.orders import ORDER_CREATED_QUEUE, OrderCreated
from tests.acceptance.conftest import System
from tests.waiting import wait_until


def management_depth(system: System, queue: str) -> int:
    auth = ("guest", "guest")
    info = httpx.get(f"{system.rabbitmq.management_url}/api/queues/%2F/{queue}", auth=auth, timeout=10).json()
    return int(info.get("messages_ready") or 0)


def exact_depth(system: System, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(system.rabbitmq.amqp_url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def db_counts(system: System) -> Counter[str]:
    with system.db.transaction() as session:
        rows = session.execute(select(Order.status, Order.lease_until)).all()
    return Counter(status for status, _ in rows)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # status on SQLite: tests/integration
def test_status_json_agrees_with_rabbitmq_and_the_database(system: System) -> None:
    system.sim("/_admin/config", {"latency_ms": 200})  # slow enough that the backlog stays visible
    system.create_orders(300)
    system.stack.env["BACKLANE_ORDERS__MAX_ITEMS"] = "200"
    assert system.cli("trigger", "orders").returncode == 0
    assert system.cli("trigger", "orders").returncode == 0  # discover runs only once a worker runs
    worker = system.stack.start_worker(processes=1, threads=1)
    # The discover messages are consumed first (priority), then stop the worker with a backlog left.
    wait_until(lambda: management_depth(system, "orders") >= 100, timeout=60, what="a backlog on 'orders'")
    worker.stop()
    # The management API refreshes its figures every few seconds: wait until it has caught up
    # with the queue's exact count (a passive declare), then the backlog is still.
    truth = exact_depth(system, "orders")
    wait_until(lambda: management_depth(system, "orders") == truth, timeout=30, what="management API caught up")

    result = system.cli("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    orders = next(p for p in status["pipelines"] if p["name"] == "orders")

    assert orders["queue_depth"]["ready"] == truth == management_depth(system, "orders")
    assert orders["queue_depth"]["unacked"] == 0
    counts = db_counts(system)
    items = orders["items"]
    assert items["done"] == counts["succeeded"]
    assert items["failed"] == counts["failed"]
    assert items["due"] + items["in_flight"] == counts["pending"] + counts["placed"]
    assert items["in_flight"] >= orders["queue_depth"]["ready"], "every queued order is leased"
    assert orders["queue_depth"]["dead_lettered"] == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the requeue is RabbitMQ's
def test_a_requeued_dead_letter_completes_once_its_cause_is_fixed(system: System) -> None:
    system.stack.env["BACKLANE_ORDERS__CREATED_GRACE_SECONDS"] = "1"
    system.stack.env["BACKLANE_ORDERS__CREATED_RECHECK_SECONDS"] = "0.2"
    system.stack.start_worker(processes=1, threads=2)
    body = json.dumps(OrderCreated(version=1, order_id=1).envelope())
    response = httpx.post(
        f"{system.rabbitmq.management_url}/api/exchanges/%2F/amq.default/publish",
        auth=("guest", "guest"),
        json={
            "properties": {"delivery_mode": 2},
            "routing_key": ORDER_CREATED_QUEUE,
            "payload": body,
            "payload_encoding": "string",
        },
        timeout=10,
    )
    assert response.json() == {"routed": True}

    listed = wait_until(
        lambda: json.loads(system.cli("dead-letters", "list", "--json").stdout), timeout=60, what="a dead letter"
    )
    assert listed[0]["kind"] == "unknown_item" and listed[0]["item"] == {"version": 1, "order_id": 1}

    system.create_orders(1)  # the cause: the order row was missing; now it is there
    requeued = system.cli("dead-letters", "requeue", "--message-id", listed[0]["message_id"])
    assert requeued.returncode == 0 and "requeued 1" in requeued.stdout

    wait_until(lambda: system.settled() == 1, timeout=60, what="the requeued order settled")
    assert system.creations() == [1]
    assert json.loads(system.cli("dead-letters", "list", "--json").stdout) == []


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite: test_worker_supervision
def test_sigterm_during_a_run_loses_nothing_and_duplicates_nothing(system: System) -> None:
    system.sim("/_admin/config", {"latency_ms": 30})
    system.create_orders(300)
    worker = system.stack.start_worker(processes=1, threads=8)
    assert system.cli("trigger", "orders").returncode == 0
    wait_until(lambda: system.settled() >= 50, timeout=60, what="part of the run settled")

    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    worker.proc.wait(60)
    assert worker.proc.returncode == 0, worker.log_tail()
    assert system.settled() < 300, "the worker must be stopped mid-run"

    system.stack.start_worker(processes=1, threads=8)
    wait_until(lambda: system.settled() == 300, timeout=120, what="every order settled after the restart")
    assert system.creations() == [1] * 300


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_secret_settings_never_appear_in_logs_or_status(system: System, database_url: str) -> None:
    secret = "S3cretMarker-7f3a"
    rabbit = system.rabbitmq.management_url
    auth = ("guest", "guest")
    httpx.put(
        f"{rabbit}/api/users/backlane-ops", auth=auth, json={"password": secret, "tags": "administrator"}, timeout=10
    ).raise_for_status()
    httpx.put(
        f"{rabbit}/api/permissions/%2F/backlane-ops",
        auth=auth,
        json={"configure": ".*", "write": ".*", "read": ".*"},
        timeout=10,
    ).raise_for_status()
    port = system.rabbitmq.amqp_url.rsplit(":", 1)[1].split("/")[0]
    system.stack.env.update(
        {
            "BACKLANE_BROKER__URL": f"amqp://backlane-ops:{secret}@127.0.0.1:{port}/%2F",
            "BACKLANE_BROKER__MANAGEMENT_USER": "backlane-ops",
            "BACKLANE_BROKER__MANAGEMENT_PASSWORD": secret,
            "BACKLANE_ORDER_API__API_KEY": f"sk-{secret}",
            # PostgreSQL here trusts loopback, so a password in the URL is accepted and ignored.
            "BACKLANE_DATABASE__URL": database_url.replace("postgres@", f"postgres:{secret}@"),
            "BACKLANE_LOG_LEVEL": "DEBUG",
        }
    )
    system.sim("/_admin/config", {"failure_rate": 0.3, "seed": 1})
    system.create_orders(20)
    system.stack.start_worker(processes=1, threads=4, extra_env={"BACKLANE_WORKER__METRICS_PORT": "0"})
    system.stack.start_clock()
    wait_until(lambda: system.settled() == 20, timeout=90, what="the orders settled")

    outputs = [
        system.cli(*args)
        for args in (["status"], ["status", "--json"], ["pipelines"], ["dead-letters", "list"], ["trigger", "orders"])
    ]
    assert all(o.returncode == 0 for o in outputs), [o.stderr for o in outputs]
    texts = [o.stdout + o.stderr for o in outputs]
    texts += [Path(p.log_path).read_text() for p in system.stack.processes]
    assert any('"outcome":"retry"' in t for t in texts), "the logs must cover failures too"
    leaks = [t[max(0, t.find(secret) - 200) : t.find(secret) + 50] for t in texts if secret in t]
    assert not leaks, f"secret found in output: {leaks[:2]}"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_worker_serves_health_and_per_pipeline_metrics(system: System) -> None:
    from devtools.infra.ports import free_port

    port = free_port()
    system.sim("/_admin/config", {"failure_rate": 0.3, "seed": 2})
    system.create_orders(30)
    system.stack.start_worker(processes=2, threads=4, extra_env={"BACKLANE_WORKER__METRICS_PORT": str(port)})
    assert system.cli("trigger", "orders").returncode == 0
    wait_until(lambda: system.settled() == 30, timeout=90, what="the orders settled")

    def get(path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
        except httpx.HTTPError:
            return None

    health = wait_until(lambda: get("/health"), timeout=30, what="the health endpoint")
    assert health.status_code == 200
    assert health.json()["broker"]["health"] == "healthy"
    metrics = get("/metrics")
    assert metrics is not None and metrics.status_code == 200
    lines = metrics.text.splitlines()
    succeeded = [
        ln
        for ln in lines
        if ln.startswith("backlane_items_total{") and 'outcome="succeeded"' in ln and 'pipeline="orders"' in ln
    ]
    assert succeeded and sum(float(ln.rsplit(" ", 1)[1]) for ln in succeeded) >= 30
    assert any(ln.startswith("backlane_items_total{") and 'outcome="retry"' in ln for ln in lines)
    assert any(ln.startswith("dramatiq_messages_total{") for ln in lines)

    system.rabbitmq.stop()
    try:
        down = wait_until(lambda: (r := get("/health")) is not None and r.status_code == 503 and r, timeout=30)
        assert down.json()["broker"]["health"] == "unhealthy"
    finally:
        system.rabbitmq.start()
