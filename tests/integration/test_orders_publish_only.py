"""Publish-only mode: orders discover publishes OrderCreated(RequestId) as MassTransit does, for
the platform's .NET consumer, and places nothing itself; an order left unsettled is published
again only once its lease ended (the clock is the test's)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import pika
import pytest
from sqlalchemy import select, update

from actors.orders.models import Order
from backlane.core.discovery import discover
from backlane.core.registry import REGISTRY
from backlane.messaging import masstransit_send
from backlane.messaging.queues import declare_all
from contracts.orders import ORDER_CREATED_MESSAGE_TYPE, ORDER_CREATED_QUEUE
from devtools.sample import create_orders
from tests.integration.conftest import App

#: The .NET consumer's queue, bound to the exchange as MassTransit binds a consumer endpoint.
DOTNET_QUEUE = "test_dotnet_order_created_consumer"


@pytest.fixture
def dotnet(app: App) -> Iterator[Any]:
    declare_all(app.broker)  # an earlier run, not publish-only: the exchange bound to orders_inbox
    channel = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url)).channel()
    channel.queue_declare(queue=DOTNET_QUEUE, durable=True)
    channel.queue_bind(queue=DOTNET_QUEUE, exchange=ORDER_CREATED_MESSAGE_TYPE)
    channel.queue_purge(DOTNET_QUEUE)
    yield channel
    channel.queue_delete(DOTNET_QUEUE)
    channel.connection.close()


def bound_queues(app: App) -> set[str]:
    response = httpx.get(
        f"{app.rabbitmq.management_url}/api/exchanges/%2F/{quote(ORDER_CREATED_MESSAGE_TYPE)}/bindings/source",
        auth=("guest", "guest"),
        timeout=10,
    )
    response.raise_for_status()
    return {binding["destination"] for binding in response.json()}


def received(channel: Any) -> list[tuple[Any, bytes]]:
    got = []
    while True:
        method, properties, body = channel.basic_get(DOTNET_QUEUE, auto_ack=True)
        if method is None:
            return got
        got.append((properties, body))


def check_as_masstransit_publishes(app: App, messages: list[tuple[Any, bytes]], sent: datetime) -> list[str]:
    """Each message byte for byte what masstransit_send.published writes (held in the unit test
    against docs/masstransit-faults.md), its ids its own; returns the request ids."""
    request_ids = []
    for properties, body in messages:
        document = json.loads(body)
        expected_properties, expected_body = masstransit_send.published(
            {"requestId": document["message"]["requestId"]},
            ORDER_CREATED_MESSAGE_TYPE,
            message_id=document["messageId"],
            conversation_id=document["conversationId"],
            source_address="rabbitmq://localhost/discover",
            sent=sent,
            host=masstransit_send.this_host(),
        )
        assert body == expected_body
        assert properties.content_type == expected_properties["content_type"] == "application/vnd.masstransit+json"
        assert properties.delivery_mode == 2
        assert properties.message_id == document["messageId"]
        request_ids.append(document["message"]["requestId"])
    return request_ids


def test_publish_only_publishes_each_order_once_per_lease_and_places_none(app: App, dotnet: Any, worker: Any) -> None:
    assert bound_queues(app) == {ORDER_CREATED_QUEUE, DOTNET_QUEUE}
    app.configure("orders", publish_only=True, max_items=1000)
    declare_all(app.broker)  # `backlane declare-queues` in publish-only mode: the old binding goes
    assert bound_queues(app) == {DOTNET_QUEUE}
    create_orders(app.db, 1000, app.clock.now())
    with app.db.transaction() as session:
        all_ids = set(session.scalars(select(Order.request_id)))
    orders = REGISTRY.get("orders")

    first = discover(orders)
    again = discover(orders)  # the same minute: every order is leased
    assert (first.enqueued, again.enqueued) == (0, 0), "no per-item message: backlane places nothing"
    published = check_as_masstransit_publishes(app, received(dotnet), app.clock.now())
    assert Counter(published) == Counter(all_ids), "each order published exactly once"

    # The .NET consumer settles 600 of them; 400 are left as they were.
    settled = sorted(all_ids)[:600]
    with app.db.transaction() as session:
        session.execute(update(Order).where(Order.request_id.in_(settled)).values(status="succeeded"))
    lease = app.config("orders").lease_seconds
    app.clock.advance(seconds=lease - 1)
    assert discover(orders).enqueued == 0 and received(dotnet) == [], "nothing before the lease ends"
    app.clock.advance(seconds=2)
    discover(orders)
    republished = check_as_masstransit_publishes(app, received(dotnet), app.clock.now())
    assert Counter(republished) == Counter(all_ids - set(settled)), "the unsettled ones, once each"

    assert app.sim_stats()["orders"]["created"] == 0, "backlane placed no order"
    assert app.queue_counts(ORDER_CREATED_QUEUE)[0] == 0, "backlane's inbox got none of what it published"
    with app.db.transaction() as session:
        assert Counter(session.scalars(select(Order.status))) == Counter({"succeeded": 600, "pending": 400})
