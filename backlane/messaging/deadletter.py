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

import dramatiq.errors
import pika.exceptions
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import _RabbitmqConsumer, _RabbitmqMessage
from dramatiq.common import q_name, xq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message
from dramatiq.middleware import SkipMessage

from backlane.core.log_limits import cut
from backlane.errors import BacklaneError
from backlane.messaging import letters
from backlane.messaging.intake import Refused, admit
from backlane.messaging.publishing import InvalidOutgoing, MessageTooLarge, Outgoing
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
        "reason": letters.bounded_reason(reason),
        "retries": retries,
        "failed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def dead_letter_outgoing(queue: str, envelope: dict[str, Any], info: dict[str, Any]) -> Outgoing:
    """The letter of backlane's own message that failed: its Dramatiq envelope with
    ``options.dead_letter`` (what requeue reopens the row from), the same in headers."""
    envelope = dict(envelope)
    envelope["options"] = {**(envelope.get("options") or {}), "dead_letter": info}
    given = envelope.get("message_id")
    message_id = given if letters.is_shortstr(given) and given else letters.new_message_id()
    annotation = letters.Annotation(info["kind"], info["reason"], q_name(queue), info["failed_at"], info["retries"])
    return Outgoing(
        routing_key=xq_name(q_name(queue)),
        body=json.dumps(envelope, separators=(",", ":"), default=str).encode(),
        message_id=message_id,
        headers=letters.annotation_headers(annotation, letters.ENVELOPE),
    )


#: What a letter too large for RabbitMQ keeps of its body, bytes.
TRUNCATED_KEEP = 64 * 1024


def publish_letter(broker: BacklaneBroker, queue: str, body: bytes, props: dict[str, Any]) -> None:
    """Publish a letter to ``queue``'s .XQ (confirmed). One RabbitMQ refuses for its size is
    published again with only the head of its body and the original size in a header (it
    cannot be requeued, but the operator sees it and why), not retried as an outage."""
    out = Outgoing(xq_name(queue), body, str(props["message_id"]), properties=props)
    try:
        broker.publish([out])
    except InvalidOutgoing as exc:  # properties AMQP cannot carry back: keep the body and the reason
        logger.error(
            "dead letter %s: its properties cannot be sent (%s); keeping its body and reason", out.message_id, exc
        )
        given = props.get("headers") or {}
        headers = {k: given[k] for k in letters.ANNOTATION_NAMES if k in given}
        headers[letters.ADDED] = "message_id headers"  # requeue sends the body alone
        headers[f"{letters.PREFIX}properties-dropped"] = letters.bounded_reason(str(exc), 300)
        letter_id = letters.new_message_id()
        minimal = {"delivery_mode": 2, "message_id": letter_id, "headers": headers}
        broker.publish([Outgoing(xq_name(queue), body, letter_id, properties=minimal)])
    except MessageTooLarge as exc:
        logger.error(
            "dead letter %s is too large for RabbitMQ (%s); keeping its first %d bytes",
            out.message_id,
            exc,
            TRUNCATED_KEEP,
        )
        head, head_props = letters.truncated(body, props, TRUNCATED_KEEP)
        broker.publish([Outgoing(xq_name(queue), head, out.message_id, properties=head_props)])


def envelope_letter_props(out: Outgoing) -> dict[str, Any]:
    return {"delivery_mode": 2, "message_id": out.message_id, "content_type": out.content_type, "headers": out.headers}


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

        admitted = admit(self.broker, self.queue_name, properties, body)  # total: never raises
        if isinstance(admitted, Refused):
            settle = self.channel.basic_ack
            try:
                self._dead_letter_raw(body, admitted.reason, admitted.message, properties)
            except (ConnectionClosed, pika.exceptions.AMQPConnectionError, dramatiq.errors.BrokerConnectionError):
                raise  # an outage: RabbitMQ delivers it again once the consumer is back
            except Exception:
                # Never an exception out of the consumer (Dramatiq's ConsumerThread would restart
                # it and RabbitMQ give this message again at the head of the queue, stalling it
                # for every worker), never an ack of a message kept nowhere: RabbitMQ's own
                # dead-lettering moves it to .XQ as it is, with its x-death headers.
                logger.exception("could not dead-letter a refused message from %s; rejecting it", self.queue_name)
                settle = lambda tag: self.channel.basic_nack(tag, requeue=False)  # noqa: E731
            try:
                settle(method.delivery_tag)
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
                raise ConnectionClosed(e) from None  # unsettled: delivered again after the restart
            return None

        message = admitted
        proxy = _RabbitmqMessage(method.redelivered, method.delivery_tag, message)
        self.known_tags.add(method.delivery_tag)
        return proxy

    def _dead_letter_raw(self, body: bytes, problem: str, message: Message | None, properties: Any = None) -> None:
        """Dead-letter a delivery refused at the boundary as it came (:mod:`backlane.messaging.letters`):
        its body byte for byte, its properties, the reason in ``x-backlane-*`` headers."""
        queue = q_name(self.queue_name)
        logger.warning("dead-lettering a malformed message from %s: %s", self.queue_name, cut(problem, 300))
        hint = getattr(message, "message_id", None)
        annotation = letters.Annotation("malformed", letters.bounded_reason(problem), queue)
        letter_body, props = letters.encode(
            body, properties, annotation, message_id=hint if isinstance(hint, str) else None
        )
        publish_letter(self.broker, queue, letter_body, props)
        metrics.observe_dead_letter(queue, "malformed")

    def nack(self, message: MessageProxy) -> None:
        kind, reason = failure_of(message)
        retries = message.options.get("retries", 0)
        info = dead_letter_info(self.queue_name, kind, reason, retries if isinstance(retries, int) else 0)
        envelope = message.asdict()
        envelope["args"] = list(envelope["args"])
        envelope["options"] = {k: v for k, v in envelope["options"].items() if k not in ("eta", "traceback")}
        envelope["queue_name"] = q_name(self.queue_name)
        # The copy must be safe in .XQ before the original is let go.
        out = dead_letter_outgoing(self.queue_name, envelope, info)
        publish_letter(self.broker, q_name(self.queue_name), out.body, envelope_letter_props(out))
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
