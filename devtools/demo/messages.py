"""Raw publishes to RabbitMQ, as a service without Dramatiq (or an operator's command) would send them.

The demo announces work the way the outside world does (plain JSON bytes on a queue)
and asks for a pipeline's discover now, as ``backlane trigger NAME`` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pika
from dramatiq import Message

from backlane.messaging.broker import DISCOVER_QUEUE


def publish(amqp_url: str, bodies: Iterable[tuple[str, bytes]]) -> None:
    """Publish (routing key, body) pairs, persistent and confirmed, on the default exchange."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for routing_key, body in bodies:
            channel.basic_publish(
                "",
                routing_key,
                body,
                pika.BasicProperties(delivery_mode=2, content_type="application/json"),
                mandatory=True,
            )
    finally:
        connection.close()


def trigger_discover(amqp_url: str, pipelines: Sequence[str]) -> None:
    """What ``backlane trigger NAME`` does: a discover message for each pipeline, now."""
    publish(
        amqp_url,
        [
            (
                DISCOVER_QUEUE,
                Message(
                    queue_name=DISCOVER_QUEUE, actor_name=f"discover_{name}", args=(), kwargs={}, options={}
                ).encode(),
            )
            for name in pipelines
        ],
    )
