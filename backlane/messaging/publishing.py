"""Publishing a batch of messages with one wait for all their confirms.

Dramatiq's RabbitMQ broker, with confirms on, waits for RabbitMQ's ack after
every message: one round trip each, which caps a discover tick at ~1,200 msg/s
on this kind of machine. Here a batch is published back to back on a channel in
confirm mode and the confirms are collected together. Every message is
``mandatory``: if RabbitMQ cannot route one (its queue deleted by an operator)
it comes back, and :class:`BatchPublisher` re-declares the queue through the
broker and sends it again, or raises :class:`UnroutableMessages`.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.spec import Basic

from backlane.errors import UnroutableMessages as UnroutableMessages  # raised by the broker; named here too

#: Longest wait for the confirms of one batch, seconds.
CONFIRM_TIMEOUT = 30.0
#: One slice of waiting for confirms, seconds. pika's wait runs until the slice ends
#: (confirm callbacks on the async channel do not end it early), so a long slice is
#: dead time added to every batch: 50 ms was half of a 1,000-message discover tick.
CONFIRM_POLL_SLICE = 0.002
#: The reason :meth:`BatchPublisher.publish` gives a message RabbitMQ nacked (it may be sent again).
NACKED = "nacked by RabbitMQ"


@dataclass(frozen=True)
class Outgoing:
    routing_key: str
    body: bytes
    message_id: str
    headers: dict[str, Any] | None = None
    priority: int | None = None
    #: "" is the default exchange (routing key = queue name); events go to their own exchange.
    exchange: str = ""
    #: AMQP content type; MassTransit consumers read theirs from it (application/vnd.masstransit+json).
    content_type: str = "application/json"


class BatchPublisher:
    """One connection and confirm-mode channel; not thread-safe (one per thread)."""

    def __init__(self, parameters: Any) -> None:
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        self._impl = self.channel._impl  # the async channel: publish without waiting per message
        ready: list[bool] = []
        self._impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=lambda _f: ready.append(True))
        self._wait_until(lambda: bool(ready), CONFIRM_TIMEOUT)
        self._impl.add_on_return_callback(self._on_return)
        self._next_tag = 1
        self._outstanding: dict[int, str] = {}
        self._failed: dict[str, str] = {}

    @property
    def is_open(self) -> bool:
        return bool(self.connection.is_open and self.channel.is_open)

    def publish(self, batch: Sequence[Outgoing]) -> dict[str, str]:
        """Publish all, wait for every confirm; returns {message_id: reason} of those refused."""
        self._failed = {}
        for out in batch:
            properties = pika.BasicProperties(
                delivery_mode=2,
                message_id=out.message_id,
                content_type=out.content_type,
                headers=out.headers,
                priority=out.priority,
            )
            self._impl.basic_publish(out.exchange, out.routing_key, out.body, properties, mandatory=True)
            self._outstanding[self._next_tag] = out.message_id
            self._next_tag += 1
        self._coalesce_output()
        self._wait_until(lambda: not self._outstanding, CONFIRM_TIMEOUT)
        return dict(self._failed)

    def close(self) -> None:
        try:
            if self.connection.is_open:
                self.connection.close()
        except pika.exceptions.AMQPError:
            pass

    def _wait_until(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise pika.exceptions.AMQPConnectionError("timed out waiting for publisher confirms")
            self.connection.process_data_events(time_limit=CONFIRM_POLL_SLICE)

    def _coalesce_output(self) -> None:
        """Join the frames waiting in pika's output buffer, so the batch leaves in a few
        large ``send()`` calls instead of three per message (method, header, body):
        those syscalls were a third of a discover tick. Best effort: should pika's
        transport look different, its buffers are left as they are."""
        transport = getattr(self.connection._impl, "_transport", None)
        buffers = getattr(transport, "_tx_buffers", None)
        if isinstance(buffers, collections.deque) and len(buffers) > 1:
            joined = b"".join(buffers)
            buffers.clear()
            buffers.append(joined)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tags = [t for t in self._outstanding if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        for tag in tags:
            message_id = self._outstanding.pop(tag, None)
            if message_id is not None and isinstance(method, Basic.Nack):
                self._failed[message_id] = NACKED

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        # A return always precedes the ack of the same message.
        self._failed[properties.message_id] = f"unroutable to {method.routing_key!r}: {method.reply_text}"
