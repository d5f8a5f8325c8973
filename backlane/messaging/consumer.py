"""The consumer a BacklaneBroker gives Dramatiq's worker: dead-lettering with reasons
(:class:`~backlane.messaging.deadletter.DeadLetteringConsumer`), aware of outages.

A delivery tag belongs to one channel. After RabbitMQ went away, a message delivered on
the old connection is delivered again by RabbitMQ; settling its old tag on the consumer
that replaced it would ack (or dead-letter) whichever *new* delivery has that number. So a
delivery remembers the consumer it came from, and any other consumer leaves it alone.
"""

from __future__ import annotations

import logging
from typing import Any

import pika.exceptions
from dramatiq.broker import MessageProxy
from dramatiq.common import dq_name, q_name
from dramatiq.errors import ConnectionClosed

from backlane.messaging.deadletter import DeadLetteringConsumer
from backlane.messaging.delay_looks import DueTimes, deliveries

logger = logging.getLogger("backlane.broker")

#: The attribute of a delivery naming the consumer that received it.
DELIVERED_BY = "_backlane_consumer"


class OutageAwareConsumer(DeadLetteringConsumer):
    """Reports a lost connection as an outage, and leaves alone the deliveries it cannot settle.

    On a delay queue it comes back empty when the earliest delayed message it handed out is
    due (:mod:`backlane.messaging.delay_looks`), not after a fixed timeout."""

    def __init__(self, broker: Any, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.due: DueTimes | None = None
        least_gap_ms = getattr(broker, "delay_poll_ms", None)
        if least_gap_ms is not None and queue_name == dq_name(q_name(queue_name)):
            # pika's generator made in __init__ never ran (a generator starts at its first
            # next()), so nothing consumes yet: this one takes its place.
            self.due = DueTimes(idle_wait=timeout / 1000, least_gap=least_gap_ms / 1000)
            self.iterator = deliveries(self.connection, self.channel, queue_name, self.due)

    def __next__(self) -> Any:
        try:
            proxy = super().__next__()
        except ConnectionClosed as exc:
            if isinstance(exc.message, pika.exceptions.AMQPConnectionError):
                self.broker.outage.down(exc.message, f"consume {self.queue_name}")
                self.broker.demote(self.connection)
            raise
        if proxy is not None:
            setattr(proxy, DELIVERED_BY, self)
            if self.due is not None and "eta" in proxy.options:
                self.due.held(proxy.options["eta"])
        return proxy

    def _settleable(self, message: MessageProxy) -> bool:
        if getattr(message, DELIVERED_BY, self) is self and self.connection.is_open:
            return True
        logger.info(
            "message %s was delivered on a connection that has closed; RabbitMQ delivers it again",
            message.message_id,
        )
        return False

    def ack(self, message: MessageProxy) -> None:
        if self._settleable(message):
            super().ack(message)

    def nack(self, message: MessageProxy) -> None:
        if self._settleable(message):
            super().nack(message)
