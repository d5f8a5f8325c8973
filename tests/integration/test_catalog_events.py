"""CatalogSectionRefreshed on the catalog.events fanout exchange, as another service sees it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from backlane.core.registry import Registered
from contracts.catalog import CatalogSectionRefreshed
from tests.integration.catalog_support import (
    catalog_pipeline,  # noqa: F401  (the `catalog` fixture)
    only_sections,
    run_due,
)
from tests.integration.conftest import App
from tests.waiting import wait_until


@pytest.fixture
def subscriber(app: App) -> Iterator[Any]:
    """Another service: its own exclusive queue bound to the exchange."""
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    channel = connection.channel()
    exchange = app.config("catalog").event_exchange
    channel.exchange_declare(exchange, exchange_type="fanout", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange)
    channel.queue_name = queue
    yield channel
    connection.close()


def received(channel: Any) -> list[tuple[CatalogSectionRefreshed, Any]]:
    events = []
    while True:
        method, properties, body = channel.basic_get(channel.queue_name, auto_ack=True)
        if method is None:
            return events
        events.append((CatalogSectionRefreshed.model_validate(json.loads(body)), properties))


def test_every_successful_refresh_publishes_one_event(app: App, catalog: Registered, subscriber: Any) -> None:
    only_sections(app, "lots")
    run_due(app, catalog)
    app.clock.advance(minutes=15)
    run_due(app, catalog)

    events: list[tuple[CatalogSectionRefreshed, Any]] = []
    wait_until(lambda: events.extend(received(subscriber)) or len(events) >= 2, timeout=10, what="two events")
    (first, props), (second, _) = events
    assert (first.section, first.source, first.changed, first.inserted) == ("lots", "erp", True, 30)
    assert (second.changed, second.inserted, second.unchanged) == (False, 0, 30)
    assert second.refreshed_at > first.refreshed_at
    assert props.delivery_mode == 2 and props.headers["event"] == "CatalogSectionRefreshed"
    assert received(subscriber) == [], "exactly one event per refresh"


def test_events_in_masstransit_envelope_for_a_dotnet_consumer(app: App, catalog: Registered) -> None:
    """With the setting on, a MassTransit consumer of SharedContracts:CatalogSectionRefreshed gets each
    event as MassTransit's bus would deliver it: its envelope, camelCase, on the message-type exchange."""
    app.configure("catalog", event_masstransit_namespace="SharedContracts")
    exchange = "SharedContracts:CatalogSectionRefreshed"
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    channel = connection.channel()
    channel.exchange_declare(exchange, exchange_type="fanout", durable=True)  # what MassTransit declares too
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange)
    try:
        only_sections(app, "lots")
        run_due(app, catalog)

        def one() -> Any:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            return (properties, json.loads(body)) if method is not None else None

        properties, document = wait_until(one, timeout=10, what="the MassTransit copy of the event")
        assert properties.content_type == "application/vnd.masstransit+json"
        assert properties.delivery_mode == 2 and properties.message_id == document["messageId"]
        assert document["messageType"] == ["urn:message:SharedContracts:CatalogSectionRefreshed"]
        message = document["message"]
        assert (message["section"], message["source"], message["inserted"]) == ("lots", "erp", 30)
        assert "refreshedAt" in message and "refreshed_at" not in message
        assert {"messageId", "conversationId", "sourceAddress", "destinationAddress", "sentTime", "host"} <= set(
            document
        )
    finally:
        connection.close()
