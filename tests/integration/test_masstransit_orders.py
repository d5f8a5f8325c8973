"""OrderCreated from an unchanged MassTransit (v8) publisher, on the real broker.

The bodies are byte for byte what MassTransit's System.Text.Json serializers write
(envelope: camelCase, indented, null fields left out; raw JSON: the message alone),
published as its RabbitMQ transport does: to the durable fanout exchange named after
the message type, persistent, with the content type and message id as AMQP properties."""

from __future__ import annotations

import json
import uuid
from typing import Any

import dramatiq
import pika
from sqlalchemy import select

from actors.orders.models import Order
from backlane.messaging.queues import declare_all
from contracts.orders import ORDER_CREATED_MESSAGE_TYPE, ORDER_CREATED_QUEUE
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.integration.test_orders_pipeline import all_settled, dead_letters, statuses
from tests.waiting import wait_until

EXCHANGE = ORDER_CREATED_MESSAGE_TYPE  # "SharedContracts:OrderCreated"
ENVELOPE = "application/vnd.masstransit+json"
RAW = "application/json"

#: What `await publishEndpoint.Publish(new OrderCreated(requestId))` writes with MassTransit 8's
#: default serializer (SystemTextJsonMessageSerializer: WriteIndented, camelCase, nulls omitted).
ENVELOPE_TEMPLATE = """{
  "messageId": "%(message_id)s",
  "conversationId": "3f2c0000-5d8a-0015-c8d5-08dc1f0b7a1e",
  "sourceAddress": "rabbitmq://localhost/shop01_OrdersApi_bus_yyyoyyrxhyf8ftq1bdq7ueq3fq?temporary=true",
  "destinationAddress": "rabbitmq://localhost/%(message_type)s",
  "messageType": [
    "urn:message:%(message_type)s"
  ],
  "message": %(message)s,
  "sentTime": "2024-01-26T09:14:03.1234567Z",
  "headers": {},
  "host": {
    "machineName": "shop01",
    "processName": "OrdersApi",
    "processId": 4711,
    "assembly": "OrdersApi",
    "assemblyVersion": "1.0.0.0",
    "frameworkVersion": "8.0.1",
    "massTransitVersion": "8.1.3.0",
    "operatingSystemVersion": "Unix 6.1.0.17"
  }
}"""


def mt_envelope(message: dict[str, Any], message_id: str, message_type: str = EXCHANGE) -> bytes:
    text = json.dumps(message, indent=2).replace("\n", "\n  ")
    return (ENVELOPE_TEMPLATE % {"message_id": message_id, "message_type": message_type, "message": text}).encode()


def publish(
    app: App, body: bytes, content_type: str | None, message_id: str, headers: dict[str, Any] | None = None
) -> None:
    """As MassTransit's RabbitMQ transport publishes: the message-type exchange, persistent,
    content type and message id as properties, mandatory with a confirm."""
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        properties = pika.BasicProperties(
            content_type=content_type, message_id=message_id, delivery_mode=2, headers=headers or {}
        )
        channel.basic_publish(EXCHANGE, "", body, properties, mandatory=True)
    finally:
        connection.close()


def raw_headers(message_id: str, message_type: str = EXCHANGE) -> dict[str, Any]:
    """The transport headers MassTransit's raw serializer adds (RawSerializerOptions.Default)."""
    return {"MessageId": message_id, "MT-MessageType": f"urn:message:{message_type}", "Content-Type": RAW}


def content(request_id: str, **extra: Any) -> dict[str, Any]:
    return {"requestId": request_id, "customer": "customer-7", "items": [{"sku": "SKU-1", "quantity": 2}], **extra}


def request_ids(app: App) -> list[str]:
    with app.db.transaction() as session:
        return list(session.scalars(select(Order.request_id).order_by(Order.id)))


def creations(app: App) -> dict[str, int]:
    by_key = app.sim_stats()["orders"]["by_key"]
    return {rid: by_key.get(rid, {}).get("creations", 0) for rid in request_ids(app)}


def start_worker(app: App) -> dramatiq.Worker:
    worker = dramatiq.Worker(app.broker, worker_threads=4, worker_timeout=100)
    worker.start()
    return worker


def stop_worker(app: App, worker: dramatiq.Worker) -> None:
    worker.stop(timeout=10_000)
    app.broker.middleware[:] = [m for m in app.broker.middleware if getattr(m, "worker", None) is not worker]


def test_envelope_published_before_any_worker_ran_is_kept_and_placed_once(app: App) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    connection.channel().exchange_delete(EXCHANGE)  # as on a fresh RabbitMQ
    connection.close()
    declare_all(app.broker)  # `backlane declare-queues`
    request_id = str(uuid.uuid4())
    publish(app, mt_envelope(content(request_id), str(uuid.uuid4())), ENVELOPE, str(uuid.uuid4()))
    assert app.queue_counts(ORDER_CREATED_QUEUE)[0] == 1, "the publish waits in orders_inbox"

    worker = start_worker(app)
    try:
        wait_until(lambda: all_settled(app, 1), timeout=30, what="the order settled")
    finally:
        stop_worker(app, worker)
    assert creations(app) == {request_id: 1}
    assert statuses(app) == {"succeeded": 1}


def test_each_format_places_each_order_once(app: App, worker: Any) -> None:
    app.configure("orders", created_grace_seconds=30.0)
    # An order whose row the publisher shares: named by its request id only, the envelope sent 3 times.
    [order_id] = create_orders(app.db, 1, app.clock.now())
    [shared] = request_ids(app)
    message_id = str(uuid.uuid4())
    body = mt_envelope({"requestId": shared}, message_id)
    for _ in range(3):
        publish(app, body, ENVELOPE, message_id)
    # A publisher without backlane's database: content in raw JSON (extra fields ignored), twice.
    raw_id, raw_message_id = str(uuid.uuid4()), str(uuid.uuid4())
    raw = json.dumps(content(raw_id, promoCode="WINTER", channel={"web": True})).encode()
    for _ in range(2):
        publish(app, raw, RAW, raw_message_id, raw_headers(raw_message_id))
    # Content in the envelope, PascalCase property names (System.Text.Json matches case-insensitively).
    env_id = str(uuid.uuid4())
    pascal = {"RequestId": env_id, "Customer": "customer-9", "Items": [{"Sku": "SKU-2", "Quantity": 1}]}
    publish(app, mt_envelope(pascal, str(uuid.uuid4())), ENVELOPE, str(uuid.uuid4()))
    # And the same request id again in the other format: still one order.
    publish(app, mt_envelope(content(raw_id), str(uuid.uuid4())), ENVELOPE, str(uuid.uuid4()))

    wait_until(lambda: all_settled(app, 3), timeout=30, what="three orders settled")
    assert creations(app) == {shared: 1, raw_id: 1, env_id: 1}
    assert app.sim_stats()["orders"]["created"] == 3
    with app.db.transaction() as session:
        row = session.scalars(select(Order).where(Order.request_id == env_id)).one()
        assert (row.customer, row.payload) == ("customer-9", {"items": [{"sku": "SKU-2", "quantity": 1}]})
        assert session.get(Order, order_id) is not None
    assert not dead_letters(app, ORDER_CREATED_QUEUE)


def test_malformed_masstransit_messages_are_dead_lettered_with_their_reason(app: App, worker: Any) -> None:
    app.configure("orders", created_grace_seconds=1.0, created_recheck_seconds=0.2)
    good = str(uuid.uuid4())
    mid = str(uuid.uuid4())
    variants: dict[str, tuple[bytes, str | None, dict[str, Any] | None, str]] = {
        "other message type": (
            mt_envelope(content(str(uuid.uuid4())), mid, "SharedContracts:OrderCancelled"),
            ENVELOPE,
            None,
            "does not include urn:message:SharedContracts:OrderCreated",
        ),
        "raw, other message type": (
            json.dumps(content(str(uuid.uuid4()))).encode(),
            RAW,
            raw_headers(mid, "SharedContracts:OrderCancelled"),
            "does not include urn:message:SharedContracts:OrderCreated",
        ),
        "no RequestId": (mt_envelope({"customer": "c"}, mid), ENVELOPE, None, "has no RequestId"),
        "RequestId not a string": (
            mt_envelope({"requestId": 42}, mid),
            ENVELOPE,
            None,
            "request_id: Input should be a valid string",
        ),
        "RequestId with spaces": (
            mt_envelope({"requestId": "a b"}, mid),
            ENVELOPE,
            None,
            "request_id: String should match pattern",
        ),
        "no message": (
            b'{"messageId": "%s", "messageType": ["urn:message:SharedContracts:OrderCreated"]}' % mid.encode(),
            ENVELOPE,
            None,
            "has no message",
        ),
        "no messageType": (b'{"message": {"requestId": "x"}}', ENVELOPE, None, "has no messageType"),
        "bad JSON": (b'{"messageId": "x", "message": {', ENVELOPE, None, "body is not valid JSON"),
        "raw bad JSON": (b"requestId=1", RAW, None, "body is not valid JSON"),
        "wrong content type": (
            b"<OrderCreated/>",
            "application/vnd.masstransit+xml",
            None,
            "content type 'application/vnd.masstransit+xml' is not accepted",
        ),
        "unknown request id": (
            mt_envelope({"requestId": "no-such-order"}, mid),
            ENVELOPE,
            None,
            "order with request id 'no-such-order' does not exist",
        ),
    }
    for body, content_type, headers, _reason in variants.values():
        publish(app, body, content_type, str(uuid.uuid4()), headers)
    publish(app, mt_envelope(content(good), str(uuid.uuid4())), ENVELOPE, str(uuid.uuid4()))  # a valid one right after

    wait_until(lambda: all_settled(app, 1), timeout=30, what="the valid order settled")
    assert creations(app) == {good: 1}
    letters = wait_until(
        lambda: (d := dead_letters(app, ORDER_CREATED_QUEUE)) and len(d) >= len(variants) and d,
        timeout=30,
        what="every malformed message dead-lettered",
    )
    assert len(letters) == len(variants)
    reasons = [letter["options"]["dead_letter"]["reason"] for letter in letters]
    for name, (_body, _type, _headers, reason) in variants.items():
        assert any(reason in r for r in reasons), f"{name}: no dead letter says {reason!r} in {reasons}"
