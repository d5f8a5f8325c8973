"""Publishing a batch of messages with one wait for all their confirms.

Dramatiq's RabbitMQ broker, with confirms on, waits for RabbitMQ's ack after
every message: one round trip each, which caps a discover tick at ~1,200 msg/s
on this kind of machine. Here a batch is published back to back on a channel in
confirm mode and the confirms are collected together. Every message is
``mandatory``: if RabbitMQ cannot route one (its queue deleted by an operator)
it comes back, and :class:`BatchPublisher` re-declares the queue through the
broker and sends it again, or raises :class:`UnroutableMessages`.

Before anything of a batch is sent, every message is checked against AMQP's field limits
(a message id, content type or header name longer than 255 bytes would otherwise break
pika's encoder mid-batch): :class:`InvalidOutgoing` names the field. A message RabbitMQ
refuses for its size (``max_message_size``) closes the channel with PRECONDITION_FAILED;
that is :class:`MessageTooLarge`, not an outage to retry for ever.
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

from backlane.errors import BacklaneError
from backlane.errors import UnroutableMessages as UnroutableMessages  # raised by the broker; named here too
from backlane.messaging.blocking import Blocks, BrokerBlocked, watch
from backlane.messaging.letters import PROPERTY_NAMES, SHORTSTR_LIMIT

#: Longest wait for the confirms of one batch, seconds.
CONFIRM_TIMEOUT = 30.0
#: One slice of waiting for confirms, seconds. pika's wait runs until the slice ends
#: (confirm callbacks on the async channel do not end it early), so a long slice is
#: dead time added to every batch: 50 ms was half of a 1,000-message discover tick.
CONFIRM_POLL_SLICE = 0.002
#: The reason :meth:`BatchPublisher.publish` gives a message RabbitMQ nacked (it may be sent again).
NACKED = "nacked by RabbitMQ"
#: Properties AMQP carries as short strings (at most 255 bytes).
SHORTSTR_PROPERTIES = (
    "content_type",
    "content_encoding",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)


class InvalidOutgoing(BacklaneError, ValueError):
    """A message that AMQP cannot carry (a field too long, of the wrong type): nothing was sent."""

    kind = "invalid_message"


class MessageTooLarge(BacklaneError):
    """RabbitMQ refused a message for its size (its ``max_message_size``); never retried as an outage."""

    kind = "message_too_large"


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
    #: Every AMQP property of the message as it must be sent (pika's names), e.g. a dead letter
    #: put back as it first came; given, it replaces the fields above (``message_id`` stays
    #: the key its confirm is reported under).
    properties: dict[str, Any] | None = None

    def basic_properties(self) -> pika.BasicProperties:
        if self.properties is not None:
            return pika.BasicProperties(**{k: v for k, v in self.properties.items() if k in PROPERTY_NAMES})
        return pika.BasicProperties(
            delivery_mode=2,
            message_id=self.message_id,
            content_type=self.content_type,
            headers=self.headers,
            priority=self.priority,
        )


def problem_of(out: Outgoing) -> str | None:
    """Why AMQP cannot carry ``out`` (checked before anything is sent), or None."""
    if not isinstance(out.body, bytes):
        return f"body must be bytes, not {type(out.body).__name__}"
    props = (
        out.properties
        if out.properties is not None
        else {"message_id": out.message_id, "content_type": out.content_type, "headers": out.headers}
    )
    if not _short(out.routing_key) or not _short(out.exchange):
        return "routing key and exchange must be strings of at most 255 bytes"
    for name in SHORTSTR_PROPERTIES:
        value = props.get(name)
        if value is not None and not _short(value):
            return f"property {name} must be a string of at most {SHORTSTR_LIMIT} bytes of UTF-8 ({_size(value)})"
    headers = props.get("headers")
    if headers is not None:
        if not isinstance(headers, dict):
            return f"headers must be a table, not {type(headers).__name__}"
        problem = _table_problem(headers, "headers")
        if problem is not None:
            return problem
    return None


def _short(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return len(value.encode("utf-8")) <= SHORTSTR_LIMIT
    except UnicodeEncodeError:
        return False


def _size(value: object) -> str:
    if not isinstance(value, str):
        return type(value).__name__
    return f"{len(value.encode('utf-8', 'surrogatepass')):,} bytes"


def _table_problem(table: dict[Any, Any], where: str, depth: int = 0) -> str | None:
    if depth > 20:
        return f"{where} nests tables more than 20 deep"
    for key, value in table.items():
        if not _short(key):
            shown = key[:40] if isinstance(key, str) else type(key).__name__
            return f"{where} key {shown!r}... must be a string of at most {SHORTSTR_LIMIT} bytes ({_size(key)})"
        if isinstance(value, dict):
            problem = _table_problem(value, f"{where}.{key}", depth + 1)
            if problem is not None:
                return problem
    return None


class BatchPublisher:
    """One connection and confirm-mode channel; not thread-safe (one per thread).

    ``blocked_limit``: how long a publish waits while RabbitMQ blocks the connection (a memory
    or disk alarm) before it raises :class:`~backlane.messaging.blocking.BrokerBlocked`; None
    waits for the unblock (a worker or the clock). ``blocks`` learns of every block."""

    def __init__(self, parameters: Any, *, blocked_limit: float | None = None, blocks: Blocks | None = None) -> None:
        self._closed_by: BaseException | None = None
        self.connection = pika.BlockingConnection(parameters)
        self.blocked_limit = blocked_limit
        #: RabbitMQ's reason while it blocks this connection, and since when (monotonic).
        self.blocked_reason: str | None = None
        self._blocked_since: float | None = None
        watch(self.connection, blocks, self._on_blocked, self._on_unblocked)
        self.channel = self.connection.channel()
        self._impl = self.channel._impl  # the async channel: publish without waiting per message
        ready: list[bool] = []
        self._impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=lambda _f: ready.append(True))
        self._wait_until(lambda: bool(ready), CONFIRM_TIMEOUT)
        self._impl.add_on_return_callback(self._on_return)
        self._impl.add_on_close_callback(self._on_close)
        self._next_tag = 1
        self._outstanding: dict[int, Outgoing] = {}
        self._failed: dict[str, str] = {}

    @property
    def is_open(self) -> bool:
        return bool(self.connection.is_open and self.channel.is_open)

    def publish(self, batch: Sequence[Outgoing]) -> dict[str, str]:
        """Publish all, wait for every confirm; returns {message_id: reason} of those refused."""
        self._failed = {}
        for out in batch:
            problem = problem_of(out)
            if problem is not None:
                raise InvalidOutgoing(f"message {str(out.message_id)[:80]!r} to {out.routing_key[:80]!r}: {problem}")
        for out in batch:
            self._impl.basic_publish(out.exchange, out.routing_key, out.body, out.basic_properties(), mandatory=True)
            self._outstanding[self._next_tag] = out
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
            if self._closed_by is not None:
                raise self._closed_by
            now = time.monotonic()
            if self._blocked_since is not None:
                deadline = now + timeout  # a block is not a lost confirm: it is waited out, or given up on
                if self.blocked_limit is not None and now - self._blocked_since >= self.blocked_limit:
                    raise BrokerBlocked(self.blocked_reason)
            if now > deadline:
                raise pika.exceptions.AMQPConnectionError("timed out waiting for publisher confirms")
            self.connection.process_data_events(time_limit=CONFIRM_POLL_SLICE)

    def _on_blocked(self, reason: str | None) -> None:
        self.blocked_reason, self._blocked_since = reason, time.monotonic()

    def _on_unblocked(self) -> None:
        self.blocked_reason, self._blocked_since = None, None

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
            out = self._outstanding.pop(tag, None)
            if out is not None and isinstance(method, Basic.Nack):
                self._failed[out.message_id] = NACKED

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        # A return always precedes the ack of the same message. Returns carry no delivery tag:
        # the first outstanding message with that routing key and wire message id is the one.
        for out in self._outstanding.values():
            wire_id = out.properties.get("message_id") if out.properties is not None else out.message_id
            if out.routing_key == method.routing_key and wire_id == properties.message_id:
                self._failed[out.message_id] = f"unroutable to {method.routing_key!r}: {method.reply_text}"
                return
        self._failed[str(properties.message_id)] = f"unroutable to {method.routing_key!r}: {method.reply_text}"

    def _on_close(self, _channel: Any, reason: BaseException) -> None:
        """RabbitMQ closed the channel: a message too large for it is said so, anything else is
        a channel error (the broker reconnects)."""
        text = str(getattr(reason, "reply_text", reason))
        if getattr(reason, "reply_code", None) == 406 and "message size" in text:
            self._closed_by = MessageTooLarge(f"RabbitMQ refused a message for its size: {text}")
        elif isinstance(reason, pika.exceptions.AMQPError):
            self._closed_by = reason
        else:
            self._closed_by = pika.exceptions.AMQPChannelError(text)
