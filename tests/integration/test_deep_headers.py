"""A delivery whose headers nest hundreds of tables deep, on the real broker: dead-lettered
with its reason, the order behind it placed, no reconnect.

Before messaging/amqp_tables, pika's recursive decoder raised RecursionError inside the
consumer's connection on such headers (before admit saw the delivery); the worker took it for
an outage, reconnected every 3 s and got the same message again at the head of the queue."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import pika
import pytest

from actors.orders.models import Order
from backlane.messaging.queues import declare_all
from contracts.orders import ORDER_CREATED_QUEUE
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.integration.test_masstransit_orders import start_worker, stop_worker
from tests.integration.test_orders_pipeline import dead_letters
from tests.waiting import wait_until


def nested(depth: int) -> dict[str, Any]:
    headers: dict[str, Any] = {"x": 1}
    for _ in range(depth):
        headers = {"a": headers}
    return headers


def order_created(order_id: int) -> bytes:
    args = [{"version": 1, "order_id": order_id}]
    return json.dumps(
        {"queue_name": ORDER_CREATED_QUEUE, "actor_name": "order_created", "args": args, "kwargs": {}, "options": {}}
    ).encode()


def status_of(app: App, order_id: int) -> str | None:
    with app.db.transaction() as session:
        row = session.get(Order, order_id)
        return None if row is None else row.status


def test_headers_nested_500_deep_stall_nothing(app: App, caplog: pytest.LogCaptureFixture) -> None:
    declare_all(app.broker)
    [order_id] = create_orders(app.db, 1, app.clock.now())
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(20_000)  # pika's encoder recurses too; no worker runs yet
        try:
            deep = pika.BasicProperties(message_id="deep-headers", delivery_mode=2, headers={"h": nested(500)})
            channel.basic_publish("", ORDER_CREATED_QUEUE, b"null", deep, mandatory=True)
        finally:
            sys.setrecursionlimit(limit)
        valid = pika.BasicProperties(message_id="valid", delivery_mode=2)
        channel.basic_publish("", ORDER_CREATED_QUEUE, order_created(order_id), valid, mandatory=True)
    finally:
        connection.close()

    caplog.set_level(logging.INFO)
    worker = start_worker(app)
    try:
        started = time.monotonic()
        wait_until(lambda: status_of(app, order_id) == "succeeded", timeout=30, what="the order placed")
        held = time.monotonic() - started
        wait_until(lambda: dead_letters(app, ORDER_CREATED_QUEUE), timeout=10, what="the letter")
    finally:
        stop_worker(app, worker)
    assert held < 10
    [letter] = dead_letters(app, ORDER_CREATED_QUEUE)
    assert "deeper than 64 levels" in json.dumps(letter), letter
    text = caplog.text
    assert "unreachable" not in text and "Restarting consumer" not in text and "RecursionError" not in text
