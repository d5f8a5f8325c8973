"""Dramatiq and pika internals backlane relies on, checked so an upgrade fails here, loudly,
rather than in production (pyproject.toml pins the ranges these tests pass on).

* :class:`backlane.messaging.deadletter.DeadLetteringConsumer` subclasses dramatiq's private
  ``_RabbitmqConsumer`` and builds ``_RabbitmqMessage`` itself;
* :class:`backlane.messaging.publishing.BatchPublisher` publishes on a BlockingChannel's
  async ``_impl`` and joins the frames of pika's transport output buffer.
"""

from __future__ import annotations

import collections
import inspect

import pika
from dramatiq.brokers import rabbitmq
from pika.adapters import base_connection, blocking_connection
from pika.adapters.utils import io_services_utils

from backlane.messaging.deadletter import DeadLetteringConsumer


def test_the_private_rabbitmq_consumer_still_has_what_the_dead_lettering_consumer_uses() -> None:
    consumer = rabbitmq._RabbitmqConsumer
    assert issubclass(DeadLetteringConsumer, consumer)
    init = inspect.signature(consumer.__init__).parameters
    assert {"broker", "queue_name", "prefetch", "timeout"} <= set(init), init
    source = inspect.getsource(consumer)
    # __next__ reads these; nack settles by tag the way we copy it.
    for name in ("self.iterator", "self.known_tags", "self.channel", "self.connection", "self.queue_name"):
        assert name in source, f"_RabbitmqConsumer no longer has {name}"
    assert "message._tag" in inspect.getsource(consumer.nack)  # we settle dead letters by the same tag
    assert "add_callback_threadsafe" in source
    assert list(inspect.signature(rabbitmq._RabbitmqMessage.__init__).parameters) == [
        "self",
        "redelivered",
        "tag",
        "message",
    ]
    assert hasattr(rabbitmq.RabbitmqBroker, "consumer_class") or "consumer_class" in inspect.getsource(
        rabbitmq.RabbitmqBroker
    )
    assert hasattr(rabbitmq.RabbitmqBroker, "_build_queue_arguments")
    assert hasattr(rabbitmq.RabbitmqBroker, "_declare_xq_queue")


def test_pika_channel_internals_used_by_the_batch_publisher_are_there() -> None:
    assert pika.__version__.split(".")[0] == "1"
    channel_init = inspect.getsource(blocking_connection.BlockingChannel.__init__)
    assert "self._impl" in channel_init, "BlockingChannel no longer wraps an async channel in _impl"
    async_channel = pika.channel.Channel
    assert {"ack_nack_callback", "callback"} <= set(inspect.signature(async_channel.confirm_delivery).parameters)
    assert {"exchange", "routing_key", "body", "properties", "mandatory"} <= set(
        inspect.signature(async_channel.basic_publish).parameters
    )
    assert hasattr(async_channel, "add_on_return_callback")
    assert "self._impl" in inspect.getsource(blocking_connection.BlockingConnection.__init__)
    assert "self._transport" in inspect.getsource(base_connection.BaseConnection)
    transport_source = inspect.getsource(io_services_utils)
    assert "self._tx_buffers: collections.deque[bytes] = collections.deque()" in transport_source
    assert collections.deque  # the type _coalesce_output checks for
