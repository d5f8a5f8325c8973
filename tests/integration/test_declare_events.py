"""`backlane declare-queues` declares catalog.events and its bounded recent queue, so another
service binds before any refresh and gets the first event. Real RabbitMQ, database and simulator."""

from __future__ import annotations

import json
from typing import Any

import pika
import pytest

from backlane.cli import main
from backlane.core.registry import Registered
from contracts.catalog import CatalogSectionRefreshed
from tests.integration.catalog_support import (
    catalog_pipeline,  # noqa: F401  (the `catalog` fixture)
    only_sections,
    run_due,
)
from tests.integration.conftest import App
from tests.waiting import wait_until


def test_a_consumer_binds_before_any_refresh_and_receives_the_first_event(
    app: App, catalog: Registered, capsys: pytest.CaptureFixture[str]
) -> None:
    config = app.config("catalog")
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    try:
        channel = connection.channel()
        channel.queue_delete(config.event_recent_queue)  # as on a fresh broker: nothing declared yet
        channel.exchange_delete(config.event_exchange)

        assert main(["declare-queues"]) == 0
        said = capsys.readouterr().out
        assert f"declared exchange {config.event_exchange} (+ {config.event_recent_queue}, the latest 1000)" in said

        # The consumer only binds (passive: it declares nothing of backlane's), before any refresh.
        channel.exchange_declare(config.event_exchange, exchange_type="fanout", durable=True, passive=True)
        channel.queue_declare(
            config.event_recent_queue,
            durable=True,
            passive=True,
        )
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, config.event_exchange)

        only_sections(app, "lots")
        run_due(app, catalog)
        got: list[Any] = []

        def first_event() -> bool:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is not None:
                got.append(CatalogSectionRefreshed.model_validate(json.loads(body)))
            return bool(got)

        wait_until(first_event, timeout=10, what="the first event")
        assert got[0].section == "lots"
        recent = channel.queue_declare(config.event_recent_queue, durable=True, passive=True)
        assert recent.method.message_count == 1, "the bounded recent queue keeps it too"
    finally:
        connection.close()
