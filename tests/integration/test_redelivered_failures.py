"""A message RabbitMQ delivers again after its item's row failed for good is dead-lettered
again: the first letter may have been lost with the connection that carried it (the row
was written, then the node or the network went before the letter was published and the
message acked). A message delivered for the first time to a failed row is only acked, as
before, so a stray duplicate does not add letters."""

from __future__ import annotations

from typing import Any

import pika
import pytest
from sqlalchemy import update

from actors.orders.models import Order
from backlane.core.registry import REGISTRY
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.integration.test_orders_pipeline import creations_per_order, dead_letters
from tests.waiting import wait_until

REASON = "POST /orders answered 422: <b>no items</b>"


def a_failed_order(app: App) -> int:
    [order_id] = create_orders(app.db, 1, app.clock.now())
    with app.db.transaction() as session:
        session.execute(update(Order).where(Order.id == order_id).values(status="failed", failure_reason=REASON))
    return order_id


def deliver_once_without_ack(app: App, queue: str) -> None:
    """Take the queue's message and drop the connection unacked: RabbitMQ puts it back
    with its redelivered flag set, as after a worker's or a node's connection died."""
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    channel = connection.channel()
    method = wait_until(lambda: channel.basic_get(queue, auto_ack=False)[0], timeout=10, what="the message")
    assert not method.redelivered
    connection.close()


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_redelivered_message_of_a_failed_row_is_dead_lettered_again(app: App, request: Any) -> None:
    order_id = a_failed_order(app)
    REGISTRY.get("orders").process_actor.send(order_id)
    deliver_once_without_ack(app, "orders")

    request.getfixturevalue("worker")
    letters = wait_until(lambda: dead_letters(app, "orders"), timeout=30, what="the dead letter written again")

    assert [letter["args"] for letter in letters] == [[order_id]]
    assert letters[0]["options"]["dead_letter"]["kind"] == "failed_earlier"
    assert letters[0]["options"]["dead_letter"]["reason"] == REASON
    assert creations_per_order(app) == [0], "a failed order is not worked on again"


def test_a_first_delivery_to_a_failed_row_is_only_acked(app: App, worker: Any) -> None:
    order_id = a_failed_order(app)
    REGISTRY.get("orders").process_actor.send(order_id)

    app.broker.join("orders", timeout=30_000)
    worker.join()  # its message worked on and acked (or dead-lettered) by now
    assert dead_letters(app, "orders") == []
    assert creations_per_order(app) == [0]
