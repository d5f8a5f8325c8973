"""Dramatiq's RabbitMQ broker, made safe for production use.

On top of :class:`dramatiq.brokers.rabbitmq.RabbitmqBroker` this adds:

* publisher confirms always on, ``mandatory`` publishing, and batches that wait
  for their confirms together (:mod:`backlane.messaging.publishing`);
* reconnection: publishing keeps trying while RabbitMQ restarts (up to
  ``broker.reconnect_timeout``) instead of failing after a few instant attempts,
  so neither the clock nor a worker dies with the broker;
* quorum queues when ``broker.queue_type`` says so;
* dead letters that carry their reason (:mod:`backlane.messaging.deadletter`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import q_name, xq_name
from dramatiq.errors import BrokerConnectionError
from dramatiq.message import Message
from dramatiq.middleware import Middleware

from backlane.messaging.deadletter import DeadLetteringConsumer
from backlane.messaging.publishing import BatchPublisher, Outgoing, UnroutableMessages

logger = logging.getLogger("backlane.broker")

T = TypeVar("T")
_CONNECTION_ERRORS = (BrokerConnectionError, pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError)

#: Queue every discover actor runs on, so a per-item backlog never delays a tick.
DISCOVER_QUEUE = "discover"


class BacklaneBroker(RabbitmqBroker):
    def __init__(
        self,
        *,
        url: str,
        middleware: list[Middleware] | None = None,
        queue_type: str = "classic",
        dead_letter_ttl_ms: int = 7 * 24 * 3600 * 1000,
        reconnect_timeout: float = 120.0,
    ) -> None:
        super().__init__(url=url, confirm_delivery=True, middleware=middleware)
        self.queue_type = queue_type
        self.dead_letter_ttl_ms = dead_letter_ttl_ms
        self.reconnect_timeout = reconnect_timeout
        self._local_publisher = threading.local()
        self._publishers: set[BatchPublisher] = set()
        self._publishers_lock = threading.Lock()

    @property
    def consumer_class(self) -> type[DeadLetteringConsumer]:
        return DeadLetteringConsumer

    # -- queues -------------------------------------------------------------
    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)
        if self.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
        return arguments

    def _declare_xq_queue(self, queue_name: str) -> Any:
        arguments: dict[str, Any] = {"x-message-ttl": self.dead_letter_ttl_ms}
        if self.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
        return self.channel.queue_declare(queue=xq_name(queue_name), durable=True, arguments=arguments)

    # -- publishing ---------------------------------------------------------
    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        parent = super().enqueue
        return self.with_reconnect(lambda: parent(message, delay=delay), f"enqueue {message.actor_name}")

    def enqueue_many(self, messages: Sequence[Message]) -> None:
        """Publish messages (no delay) and wait once for all their confirms."""
        if not messages:
            return
        for queue in {m.queue_name for m in messages}:
            self.with_reconnect(lambda q=queue: self.declare_queue(q, ensure=True), f"declare {queue}")  # type: ignore[misc]
        for message in messages:
            self.emit_before("enqueue", message, None)
        self.publish([Outgoing(m.queue_name, m.encode(), m.message_id) for m in messages])
        for message in messages:
            self.emit_after("enqueue", message, None)

    def publish(self, batch: Sequence[Outgoing], redeclare: Callable[[], None] | None = None) -> None:
        """Publish raw bodies with confirms; re-declare and resend what came back unroutable.

        ``redeclare`` restores the topology of messages sent to an exchange of their own
        (default: declare the queue each routing key names)."""

        def attempt() -> None:
            refused = self._publisher().publish(batch)
            if not refused:
                return
            again = [out for out in batch if out.message_id in refused]
            if redeclare is not None:
                logger.warning("%d message(s) came back unroutable; declaring their exchange again", len(again))
                redeclare()
            for queue in {q_name(out.routing_key) for out in again} if redeclare is None else ():
                logger.warning("queue %r was missing; declaring it again and resending", queue)
                self.queues_pending.add(queue)
                self.declare_queue(queue, ensure=True)
            still_refused = self._publisher().publish(again)
            if still_refused:
                raise UnroutableMessages(still_refused)

        self.with_reconnect(attempt, f"publish {len(batch)} message(s)")

    def _publisher(self) -> BatchPublisher:
        publisher: BatchPublisher | None = getattr(self._local_publisher, "publisher", None)
        if publisher is None or not publisher.is_open:
            if publisher is not None:
                self._drop_publisher(publisher)
            publisher = BatchPublisher(self.parameters)
            self._local_publisher.publisher = publisher
            with self._publishers_lock:
                self._publishers.add(publisher)
        return publisher

    def _drop_publisher(self, publisher: BatchPublisher) -> None:
        publisher.close()
        with self._publishers_lock:
            self._publishers.discard(publisher)
        if getattr(self._local_publisher, "publisher", None) is publisher:
            self._local_publisher.publisher = None

    def with_reconnect(self, operation: Callable[[], T], what: str) -> T:
        """Run ``operation``, retrying on connection errors until ``reconnect_timeout`` has passed."""
        deadline = time.monotonic() + self.reconnect_timeout
        pause = 0.2
        warned = False
        while True:
            try:
                return operation()
            except _CONNECTION_ERRORS as exc:
                publisher = getattr(self._local_publisher, "publisher", None)
                if publisher is not None:
                    self._drop_publisher(publisher)
                with contextlib.suppress(Exception):  # the connection may be gone already
                    del self.connection
                if time.monotonic() + pause > deadline:
                    logger.error("RabbitMQ unreachable for %.0fs; giving up to %s", self.reconnect_timeout, what)
                    raise
                if not warned:
                    logger.warning("RabbitMQ unreachable (%s); retrying to %s", exc or type(exc).__name__, what)
                    warned = True
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def close(self) -> None:
        with self._publishers_lock:
            publishers = list(self._publishers)
            self._publishers.clear()
        for publisher in publishers:
            publisher.close()
        super().close()
