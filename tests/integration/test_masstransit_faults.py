"""Fault<OrderCreated> on the real broker: a MassTransit-origin OrderCreated that fails for good
is published once, as MassTransit does, and received by a queue bound to MassTransit's fault
exchange (or by the exchange its faultAddress names, when that is safe)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from sqlalchemy import select

from actors.orders.models import Order
from backlane.db.models import MassTransitFault
from backlane.messaging.queues import declare_all
from backlane.operations.dead_letters.commands import requeue
from contracts.orders import ORDER_CREATED_QUEUE
from tests.integration.conftest import App
from tests.integration.test_masstransit_orders import ENVELOPE, content, mt_envelope, publish
from tests.integration.test_orders_pipeline import all_settled, dead_letters
from tests.waiting import wait_until

FAULT_EXCHANGE = "MassTransit:Fault--SharedContracts:OrderCreated--"
FAULT_TYPES = ["urn:message:MassTransit:Fault[[SharedContracts:OrderCreated]]", "urn:message:MassTransit:Fault"]
#: What a .NET monitoring service would bind: a queue of its own on the fault exchange.
WATCHER = "test_mt_fault_watcher"
#: An endpoint a publisher names as its faultAddress (its own exchange and queue).
ENDPOINT = "test_mt_fault_endpoint"


def channel_of(app: App) -> Any:
    return pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url)).channel()


@pytest.fixture
def watcher(app: App) -> Iterator[Any]:
    declare_all(app.broker)  # `backlane declare-queues`: the SharedContracts:OrderCreated exchange
    channel = channel_of(app)
    for exchange, queue in ((FAULT_EXCHANGE, WATCHER), (ENDPOINT, ENDPOINT)):
        channel.exchange_declare(exchange=exchange, exchange_type="fanout", durable=True)
        channel.queue_declare(queue=queue, durable=True)
        channel.queue_bind(queue=queue, exchange=exchange)
        channel.queue_purge(queue)
    yield channel
    for queue in (WATCHER, ENDPOINT):
        channel.queue_delete(queue)
    channel.exchange_delete(ENDPOINT)
    channel.connection.close()


def drain(channel: Any, queue: str) -> list[tuple[Any, dict[str, Any], bytes]]:
    got = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((properties, json.loads(body), body))


def with_addresses(body: bytes, **fields: str) -> bytes:
    extra = "".join(f'"{k}": "{v}",\n  ' for k, v in fields.items())
    return body.replace(b'"messageType"', extra.encode() + b'"messageType"')


def failed(app: App, request_id: str) -> bool:
    with app.db.transaction() as session:
        return session.scalar(select(Order.status).where(Order.request_id == request_id)) == "failed"


def test_a_failed_masstransit_order_created_produces_exactly_one_fault(app: App, watcher: Any, worker: Any) -> None:
    app.configure("orders", max_retries=1, created_grace_seconds=0.5, created_recheck_seconds=0.1)
    app.simulator.configure(failure_rate=1.0)  # every order API call fails: the retries are spent
    placed_id, placed_message = str(uuid.uuid4()), str(uuid.uuid4())
    unknown_message = str(uuid.uuid4())  # names an order that never appears: the inbox fails it
    hostile_message, addressed_message = str(uuid.uuid4()), str(uuid.uuid4())
    publish(app, mt_envelope(content(placed_id), placed_message), ENVELOPE, placed_message)
    publish(app, mt_envelope({"requestId": "no-such-order"}, unknown_message), ENVELOPE, unknown_message)
    # A faultAddress naming backlane's own inbox must not make backlane write there.
    hostile = with_addresses(
        mt_envelope({"requestId": "no-such-order-2"}, hostile_message), faultAddress="rabbitmq://localhost/orders_inbox"
    )
    publish(app, hostile, ENVELOPE, hostile_message)
    addressed = with_addresses(
        mt_envelope({"requestId": "no-such-order-3"}, addressed_message),
        faultAddress=f"rabbitmq://localhost/{ENDPOINT}",
    )
    publish(app, addressed, ENVELOPE, addressed_message)

    faults = wait_until(
        lambda: (got := [*drain(watcher, WATCHER)]) and got, timeout=30, what="the first fault on the fault exchange"
    )
    deadline = time.monotonic() + 30
    while len(faults) < 3 and time.monotonic() < deadline:
        faults += drain(watcher, WATCHER)
        time.sleep(0.1)
    assert failed(app, placed_id)
    sent_to_endpoint = wait_until(lambda: drain(watcher, ENDPOINT), timeout=30, what="the fault at its faultAddress")
    assert [f["message"]["faultedMessageId"] for _, f, _ in sent_to_endpoint] == [addressed_message]

    by_message = {f["message"]["faultedMessageId"]: (p, f) for p, f, _ in faults}
    assert sorted(by_message) == sorted([placed_message, unknown_message, hostile_message])
    assert len(faults) == 3, "one fault per failed message"
    properties, fault = by_message[placed_message]
    assert properties.content_type == "application/vnd.masstransit+json"
    assert properties.delivery_mode == 2
    assert properties.message_id == fault["messageId"]
    assert fault["messageType"] == FAULT_TYPES
    assert fault["destinationAddress"] == f"rabbitmq://localhost/{FAULT_EXCHANGE}"
    assert fault["conversationId"] == "3f2c0000-5d8a-0015-c8d5-08dc1f0b7a1e"
    assert fault["sourceAddress"] == "rabbitmq://localhost/orders_inbox"
    assert fault["message"]["faultMessageTypes"] == ["urn:message:SharedContracts:OrderCreated"]
    assert fault["message"]["message"] == content(placed_id)
    [exception] = fault["message"]["exceptions"]
    assert "gave up after 2 attempts" in exception["message"]
    assert fault["headers"] == {"MT-Fault-RetryCount": 1}
    assert properties.headers["MT-Fault-ConsumerType"] == "process_orders"
    assert properties.headers["MT-Reason"] == "fault"
    _, unknown = by_message[unknown_message]
    assert "does not exist" in unknown["message"]["exceptions"][0]["message"]
    assert properties.headers["MT-Host-Assembly"] == "backlane"

    # The failed order's dead letter requeued by an operator fails again: no second fault.
    letters = wait_until(lambda: dead_letters(app, "orders"), timeout=10, what="the order's dead letter")
    assert len(letters) == 1
    transient_before = app.sim_stats()["failures"]["transient"]
    report = requeue(app.broker, app.rabbitmq.amqp_url, ["orders"], lambda letter: True)
    assert len(report.requeued) == 1
    wait_until(
        lambda: app.sim_stats()["failures"]["transient"] >= transient_before + 2 and dead_letters(app, "orders"),
        timeout=30,
        what="the requeued order tried twice more and dead-lettered again",
    )
    wait_until(lambda: failed(app, placed_id), timeout=10, what="its row failed again")
    time.sleep(0.5)
    assert drain(watcher, WATCHER) == [], "a message fails once for the .NET side"
    with app.db.transaction() as session:
        rows = session.scalars(
            select(MassTransitFault).where(
                MassTransitFault.faulted_key.in_([placed_message, unknown_message, hostile_message, addressed_message])
            )
        ).all()
        assert len(rows) == 4 and all(row.sent_at is not None for row in rows)
    assert all_settled(app, 1)
    assert len(dead_letters(app, ORDER_CREATED_QUEUE)) == 3


def test_faults_can_be_switched_off(app: App, watcher: Any, worker: Any) -> None:
    app.configure("orders", created_grace_seconds=0.3, created_recheck_seconds=0.1)
    app.configure("messages", masstransit_faults=False)
    message_id = str(uuid.uuid4())
    publish(app, mt_envelope({"requestId": "never-there"}, message_id), ENVELOPE, message_id)
    wait_until(lambda: dead_letters(app, ORDER_CREATED_QUEUE), timeout=30, what="the message dead-lettered")
    time.sleep(0.3)
    assert drain(watcher, WATCHER) == []
