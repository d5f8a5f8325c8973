"""Orders end to end in one process: real RabbitMQ, real database, real simulator."""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pika
from sqlalchemy import select

from actors.orders.models import Order
from backlane.core.clock import as_utc
from backlane.core.discovery import discover
from backlane.core.registry import REGISTRY
from contracts.orders import ORDER_CREATED_ACTOR, ORDER_CREATED_QUEUE, OrderCreated
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.waiting import wait_until


def statuses(app: App) -> Counter[str]:
    with app.db.transaction() as session:
        return Counter(session.scalars(select(Order.status)))


def all_settled(app: App, total: int) -> bool:
    counts = statuses(app)
    return counts["succeeded"] + counts["failed"] == total


def creations_per_order(app: App) -> list[int]:
    by_key = app.sim_stats()["orders"]["by_key"]
    with app.db.transaction() as session:
        request_ids = list(session.scalars(select(Order.request_id)))
    return [by_key.get(rid, {}).get("creations", 0) for rid in request_ids]


def publish_raw(app: App, body: bytes) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("", ORDER_CREATED_QUEUE, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
    connection.close()


def dead_letters(app: App, queue: str) -> list[dict[str, Any]]:
    """Read (and requeue) everything in a dead-letter queue."""
    response = httpx.post(
        f"{app.rabbitmq.management_url}/api/queues/%2F/{queue}.XQ/get",
        auth=("guest", "guest"),
        json={"count": 1000, "ackmode": "ack_requeue_true", "encoding": "auto"},
        timeout=10,
    )
    response.raise_for_status()
    return [letter_view(m) for m in response.json()]


def letter_view(message: dict[str, Any]) -> dict[str, Any]:
    """A letter from the management API as these tests read it: backlane's own failed message is
    its envelope (``options.dead_letter``); a delivery dead-lettered as it came (its original
    bytes, the reason in x-backlane-* headers) reads the same, its body under ``raw_body``
    when it is no envelope."""
    raw = message["payload"]
    payload = raw if message.get("payload_encoding") == "string" else base64.b64decode(raw).decode("utf-8", "replace")
    headers = (message.get("properties") or {}).get("headers") or {}
    if headers.get("x-backlane-letter") != "original":
        return json.loads(payload)
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    decoded = isinstance(body, dict) and isinstance(body.get("actor_name"), str)
    envelope: dict[str, Any] = dict(body) if decoded else {"actor_name": "<undecodable>", "args": []}
    options = dict(envelope["options"]) if isinstance(envelope.get("options"), dict) else {}
    if not decoded:
        options["raw_body"] = payload
    options["dead_letter"] = {
        name: headers.get(f"x-backlane-{key}")
        for name, key in (
            ("kind", "kind"),
            ("reason", "reason"),
            ("queue", "queue"),
            ("failed_at", "failed-at"),
            ("retries", "retries"),
        )
    }
    envelope["options"] = options
    envelope.setdefault("message_id", (message.get("properties") or {}).get("message_id"))
    return envelope


def test_orders_settle_exactly_once_despite_transient_failures(app: App, worker: Any) -> None:
    app.simulator.configure(failure_rate=0.2, lost_response_rate=0.05, seed=3)
    create_orders(app.db, 60, app.clock.now())

    result = discover(REGISTRY.get("orders"))

    assert result.enqueued == 60
    wait_until(lambda: all_settled(app, 60), timeout=60, what="all orders settled")
    assert statuses(app) == Counter({"succeeded": 60})
    assert creations_per_order(app) == [1] * 60
    stats = app.sim_stats()
    assert stats["failures"]["transient"] > 0, "the simulator should really have failed some calls"


def test_discover_does_not_enqueue_orders_in_flight_again(app: App) -> None:
    create_orders(app.db, 30, app.clock.now())
    orders = REGISTRY.get("orders")

    first = discover(orders)
    second = discover(orders)
    app.clock.advance(seconds=app.config("orders").lease_seconds + 1)
    after_lease = discover(orders)

    assert (first.enqueued, second.enqueued, after_lease.enqueued) == (30, 0, 30)


def test_recent_orders_are_claimed_before_older_ones(app: App) -> None:
    create_orders(app.db, 40, app.clock.now())  # spread over the last 48 hours
    app.configure("orders", max_items=10)
    window_start = app.clock.now() - timedelta(hours=24)
    with app.db.transaction() as session:
        created = {order.id: as_utc(order.created_at) for order in session.scalars(select(Order))}
    orders = REGISTRY.get("orders")

    first = orders.pipeline.fetch(orders.context(), 10)
    rest = orders.pipeline.fetch(orders.context(), 100)

    assert all(created[i] >= window_start for i in first)
    recent_left = [i for i in rest if created[i] >= window_start]
    assert rest[: len(recent_left)] == recent_left, "recent orders come before older ones"
    assert len(first) + len(rest) == 40


def test_two_discovers_at_once_claim_disjoint_orders(app: App, worker: Any) -> None:
    create_orders(app.db, 200, app.clock.now())
    app.configure("orders", max_items=150)
    orders = REGISTRY.get("orders")
    results = []
    threads = [threading.Thread(target=lambda: results.append(discover(orders))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # How the 200 split between the two depends on timing; that they never overlap does not.
    assert sum(r.enqueued for r in results) == 200
    assert all(r.enqueued <= 150 for r in results)
    wait_until(lambda: all_settled(app, 200), timeout=60, what="all orders settled")
    assert creations_per_order(app) == [1] * 200


def test_the_inbox_is_declared_with_the_pipeline(app_broker: Any) -> None:
    orders = REGISTRY.get("orders")
    inbox = orders.inbox_actor
    assert inbox is not None and (inbox.actor_name, inbox.queue_name) == (ORDER_CREATED_ACTOR, ORDER_CREATED_QUEUE)
    assert app_broker.get_actor(ORDER_CREATED_ACTOR) is inbox
    assert ORDER_CREATED_QUEUE in app_broker.get_declared_queues()


def test_same_order_created_three_times_places_one_order(app: App, worker: Any) -> None:
    [order_id] = create_orders(app.db, 1, app.clock.now())
    body = json.dumps(OrderCreated(version=1, order_id=order_id).envelope()).encode()
    for _ in range(3):
        publish_raw(app, body)

    wait_until(lambda: all_settled(app, 1), timeout=30, what="the order settled")
    stats = app.sim_stats()
    assert stats["orders"]["created"] == 1
    assert creations_per_order(app) == [1]
    # One OrderCreated handed the order on; the other two found it in flight or settled.
    assert stats["requests"].get("orders.create", 0) == 1


def test_malformed_order_created_go_to_dead_letters_with_reason(app: App, worker: Any) -> None:
    [order_id] = create_orders(app.db, 1, app.clock.now())
    envelope = OrderCreated(version=1, order_id=order_id).envelope()
    bad_bodies = {
        "not json": b"this is not json {",
        "missing field": json.dumps({**envelope, "args": [{"version": 1}]}).encode(),
        "wrong type": json.dumps({**envelope, "args": [{"version": 1, "order_id": "seven"}]}).encode(),
        "unknown version": json.dumps({**envelope, "args": [{"version": 99, "order_id": order_id}]}).encode(),
        "no args": json.dumps({**envelope, "args": []}).encode(),
        "options not an object": json.dumps({**envelope, "options": []}).encode(),
        "unknown actor": json.dumps({**envelope, "actor_name": "no_such_actor"}).encode(),
    }
    for body in bad_bodies.values():
        publish_raw(app, body)
    publish_raw(app, json.dumps(envelope).encode())  # a good one after the bad ones

    wait_until(lambda: all_settled(app, 1), timeout=30, what="the valid order settled")
    letters = wait_until(
        lambda: (d := dead_letters(app, ORDER_CREATED_QUEUE)) and len(d) >= len(bad_bodies) and d,
        timeout=30,
        what="all malformed messages dead-lettered",
    )
    assert len(letters) == len(bad_bodies)
    reasons = [letter["options"]["dead_letter"]["reason"] for letter in letters]
    assert any("not a valid message envelope" in r for r in reasons)
    assert any("order_id: Field required" in r for r in reasons)
    assert any("order_id: Input should be a valid integer" in r for r in reasons)
    assert any("version: Input should be 1" in r for r in reasons)
    assert any("exactly one" in r or "single positional" in r for r in reasons)
    assert any("options must be an object" in r for r in reasons)
    assert any("no actor named 'no_such_actor'" in r for r in reasons)
    assert all(letter["options"]["dead_letter"]["kind"] == "malformed" for letter in letters)
    raw = next(letter for letter in letters if letter["actor_name"] == "<undecodable>")
    assert raw["options"]["raw_body"] == "this is not json {"


def test_order_created_before_the_row_is_visible_waits_then_fails(app: App, worker: Any) -> None:
    app.configure("orders", created_grace_seconds=1.0, created_recheck_seconds=0.2)
    publish_raw(app, json.dumps(OrderCreated(version=1, order_id=424242).envelope()).encode())

    letters = wait_until(lambda: dead_letters(app, ORDER_CREATED_QUEUE), timeout=30, what="a dead letter")
    info = letters[0]["options"]["dead_letter"]
    assert info["kind"] == "unknown_item"
    assert "order 424242 does not exist" in info["reason"]


def test_order_created_for_a_row_committed_late_is_placed(app: App, worker: Any) -> None:
    app.configure("orders", created_grace_seconds=30.0, created_recheck_seconds=0.2)
    assert not statuses(app), "a fresh database: the first order gets id 1"
    next_id = 1
    publish_raw(app, json.dumps(OrderCreated(version=1, order_id=next_id).envelope()).encode())
    [order_id] = create_orders(app.db, 1, app.clock.now())  # the publisher's commit lands late
    assert order_id == next_id

    wait_until(lambda: all_settled(app, 1), timeout=30, what="the late order settled")
    assert creations_per_order(app) == [1]


def test_permanent_api_error_marks_the_order_failed_and_dead_letters(app: App, worker: Any) -> None:
    [order_id] = create_orders(app.db, 1, app.clock.now(), payload={"items": []})  # the API answers 422
    discover(REGISTRY.get("orders"))

    wait_until(lambda: all_settled(app, 1), timeout=30, what="the order settled")
    with app.db.transaction() as session:
        order = session.get(Order, order_id)
    assert order is not None and order.status == "failed"
    assert "422" in (order.failure_reason or "")
    letters = wait_until(lambda: dead_letters(app, "orders"), timeout=30, what="a dead letter")
    assert letters[0]["args"] == [order_id]
    assert letters[0]["options"]["dead_letter"]["kind"] == "permanent"


def test_retries_run_out_marks_the_order_failed(app: App, worker: Any) -> None:
    app.configure("orders", max_retries=2)
    app.simulator.configure(failure_rate=1.0)
    [order_id] = create_orders(app.db, 1, app.clock.now())
    discover(REGISTRY.get("orders"))

    wait_until(lambda: all_settled(app, 1), timeout=30, what="the order failed")
    with app.db.transaction() as session:
        order = session.get(Order, order_id)
    assert order is not None and order.status == "failed"
    assert (order.failure_reason or "").startswith("gave up after 3 attempts")
    assert app.sim_stats()["failures"]["transient"] == 3
