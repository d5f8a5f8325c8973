"""A serving broker (worker, clock) through a RabbitMQ outage, on the real node."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pendulum
import pika
import pytest
from dramatiq.message import Message

from backlane.messaging.broker import BacklaneBroker


def test_a_tick_waits_out_the_outage_and_leaves_stamped_with_the_time_it_was_sent(rabbitmq: Any) -> None:
    """PeriodiqMiddleware skips a tick older than its skip delay: one built before a long outage
    and sent after it must carry the time it left, or the worker would drop it."""
    if not getattr(rabbitmq, "restartable", False):
        pytest.fail("this test stops RabbitMQ: run it against the private node the tests start")
    broker = BacklaneBroker(url=rabbitmq.amqp_url, middleware=[], reconnect_timeout=1)
    broker.serve()
    sent: list[Message] = []
    try:
        broker.declare_queue("tick_probe", ensure=True)
        broker.flush("tick_probe")
        built_at = pendulum.now().replace(microsecond=0)
        tick = Message(
            queue_name="tick_probe", actor_name="tick", args=(), kwargs={}, options={"scheduled_at": str(built_at)}
        )
        rabbitmq.stop()
        sender = threading.Thread(target=lambda: sent.append(broker.enqueue(tick)), daemon=True)
        sender.start()
        time.sleep(3)  # three times the reconnect timeout: a command would have given up
        assert sender.is_alive(), "a serving broker keeps waiting for RabbitMQ"
        rabbitmq.start()
        sender.join(30)
        assert sent, "the tick was sent once RabbitMQ was back"

        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq.amqp_url))
        try:
            _method, _properties, body = connection.channel().basic_get("tick_probe", auto_ack=True)
        finally:
            connection.close()
        published = json.loads(body)
        assert published["message_id"] == tick.message_id
        assert pendulum.parse(published["options"]["scheduled_at"]) >= built_at.add(seconds=3)
    finally:
        if not rabbitmq.is_running():
            rabbitmq.start()
        broker.close()
