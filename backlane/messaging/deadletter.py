"""Dead letters that say why they died.

RabbitMQ's own dead-lettering (what a plain Dramatiq ``nack`` triggers) moves the
original bytes to the ``.XQ`` queue and the reason is lost. Here the consumer
publishes an annotated copy to ``<queue>.XQ`` (confirmed) and only then acks the
original: the copy carries ``options.dead_letter`` with the reason, its class,
the time and the attempts, and the same in AMQP headers so the RabbitMQ
management UI shows it. A body that is not even a valid Dramatiq envelope is
dead-lettered the same way, raw, instead of being dropped, and the worker goes on.
On an inbox that takes MassTransit publishes (:mod:`backlane.messaging.masstransit`)
a MassTransit envelope or raw JSON message is adapted into a Dramatiq message for
the inbox's actor first, or dead-lettered raw with the reason it cannot be taken.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pika.exceptions
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import _RabbitmqConsumer, _RabbitmqMessage
from dramatiq.common import q_name, xq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message
from dramatiq.middleware import SkipMessage

from backlane.errors import BacklaneError
from backlane.messaging.intake import Refused, admit
from backlane.messaging.publishing import Outgoing
from backlane.operations import metrics

if TYPE_CHECKING:
    from backlane.messaging.broker import BacklaneBroker

logger = logging.getLogger("backlane.deadletter")

#: Actor name given to bodies that could not be decoded at all.
UNDECODABLE_ACTOR = "<undecodable>"


def failure_of(message: Any) -> tuple[str, str]:
    """(kind, reason) of why a message is being rejected."""
    exc = getattr(message, "_exception", None)
    if isinstance(exc, BacklaneError):
        return exc.kind, exc.reason
    if isinstance(exc, SkipMessage):
        return "skipped", "message skipped (older than its age limit)"
    if exc is not None:
        return "error", f"{exc.__class__.__name__}: {exc}"
    return "rejected", "rejected by the worker"


def dead_letter_info(queue: str, kind: str, reason: str, retries: int = 0) -> dict[str, Any]:
    return {
        "queue": q_name(queue),
        "kind": kind,
        "reason": reason,
        "retries": retries,
        "failed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def dead_letter_outgoing(queue: str, envelope: dict[str, Any], info: dict[str, Any]) -> Outgoing:
    envelope = dict(envelope)
    envelope["options"] = {**(envelope.get("options") or {}), "dead_letter": info}
    message_id = str(envelope.get("message_id") or f"undecodable-{datetime.now(UTC).timestamp()}")
    return Outgoing(
        routing_key=xq_name(q_name(queue)),
        body=json.dumps(envelope, separators=(",", ":")).encode(),
        message_id=message_id,
        headers={"x-backlane-kind": info["kind"], "x-backlane-reason": info["reason"][:1000]},
    )


class DeadLetteringConsumer(_RabbitmqConsumer):
    broker: BacklaneBroker

    def __next__(self) -> _RabbitmqMessage | None:
        try:
            method, properties, body = next(self.iterator)
            if method is None:
                return None
        except (AssertionError, pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
            if getattr(e, "reply_code", None) == 404:
                self.broker.queues_pending.add(q_name(self.queue_name))
            raise ConnectionClosed(e) from None

        admitted = admit(self.broker, self.queue_name, properties, body)
        if isinstance(admitted, Refused):
            self._dead_letter_raw(body, admitted.reason, admitted.message, properties)
            self.channel.basic_ack(method.delivery_tag)
            return None

        message = admitted
        proxy = _RabbitmqMessage(method.redelivered, method.delivery_tag, message)
        self.known_tags.add(method.delivery_tag)
        return proxy

    def _dead_letter_raw(self, body: bytes, problem: str, message: Message | None, properties: Any = None) -> None:
        logger.warning("dead-lettering a malformed message from %s: %s", self.queue_name, problem)
        envelope: dict[str, Any]
        if message is not None:
            envelope = {k: v for k, v in message.asdict().items() if k != "options"}
            envelope["args"] = list(message.args)
            envelope["options"] = {}
        else:
            envelope = {
                "queue_name": q_name(self.queue_name),
                "actor_name": UNDECODABLE_ACTOR,
                "args": [],
                "kwargs": {},
                "options": {"raw_body": body.decode("utf-8", errors="replace")},
            }
            content_type = getattr(properties, "content_type", None)
            if content_type:
                envelope["options"]["content_type"] = content_type
        info = dead_letter_info(self.queue_name, "malformed", problem)
        self.broker.publish([dead_letter_outgoing(self.queue_name, envelope, info)])
        metrics.observe_dead_letter(q_name(self.queue_name), "malformed")

    def nack(self, message: MessageProxy) -> None:
        kind, reason = failure_of(message)
        info = dead_letter_info(self.queue_name, kind, reason, int(message.options.get("retries", 0)))
        envelope = message.asdict()
        envelope["args"] = list(envelope["args"])
        envelope["options"] = {k: v for k, v in envelope["options"].items() if k not in ("eta", "traceback")}
        envelope["queue_name"] = q_name(self.queue_name)
        # The copy must be safe in .XQ before the original is let go.
        self.broker.publish([dead_letter_outgoing(self.queue_name, envelope, info)])
        metrics.observe_dead_letter(q_name(self.queue_name), kind)
        logger.warning(
            "dead-lettered message %s (%s) to %s: %s",
            message.message_id,
            message.actor_name,
            xq_name(q_name(self.queue_name)),
            reason,
        )
        try:
            tag = message._tag  # type: ignore[attr-defined]  # a _RabbitmqMessage
            self.known_tags.remove(tag)
        except KeyError:
            logger.warning("Failed to settle message %s: not in known tags.", message.message_id)
            return
        try:
            self.connection.add_callback_threadsafe(lambda: self.channel.basic_ack(tag))
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
            raise ConnectionClosed(e) from None
