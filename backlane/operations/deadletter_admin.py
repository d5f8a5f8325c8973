"""Operating the dead-letter queues: list, requeue (one or all), purge.

Dead letters live in ``<queue>.XQ`` as annotated copies (see
:mod:`backlane.messaging.deadletter`). Requeueing strips the annotation and the retry
counters and publishes the message back onto its queue through the normal path
(confirmed), then removes it from ``.XQ``; a message that was never decodable
goes back as its raw bytes. Messages are read over AMQP without acking, so an
interrupted command leaves every dead letter where it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pika
from dramatiq.common import q_name, xq_name

from backlane.core.processing import REQUEUED_OPTION
from backlane.messaging.deadletter import UNDECODABLE_ACTOR
from backlane.messaging.publishing import Outgoing

#: Options that belong to one delivery attempt, dropped when a message is requeued.
ATTEMPT_OPTIONS = ("dead_letter", "retries", "backlane_failures", "traceback", "requeue_timestamp", "eta")


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str
    actor: str
    item: Any
    kind: str
    reason: str
    failed_at: str
    body: dict[str, Any]

    def as_row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "body"}


def parse(queue: str, raw: bytes) -> DeadLetter:
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"actor_name": UNDECODABLE_ACTOR, "options": {"raw_body": raw.decode("utf-8", "replace")}}
    options = body.get("options") or {}
    info = options.get("dead_letter") or {}
    args = body.get("args") or []
    return DeadLetter(
        queue=q_name(queue),
        message_id=str(body.get("message_id", "")),
        actor=str(body.get("actor_name", "")),
        item=args[0] if len(args) == 1 else args,
        kind=str(info.get("kind", "unknown")),
        reason=str(info.get("reason", "dead-lettered by RabbitMQ (no reason recorded)")),
        failed_at=str(info.get("failed_at", "")),
        body=body,
    )


def requeue_body(letter: DeadLetter) -> bytes:
    """The message as it should re-enter its queue."""
    options = letter.body.get("options") or {}
    if letter.actor == UNDECODABLE_ACTOR and "raw_body" in options:
        return str(options["raw_body"]).encode()
    body = dict(letter.body)
    body["options"] = {k: v for k, v in options.items() if k not in ATTEMPT_OPTIONS}
    body["options"][REQUEUED_OPTION] = True
    body["queue_name"] = letter.queue
    return json.dumps(body, separators=(",", ":")).encode()


@contextmanager
def _channel(amqp_url: str) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()  # unacked messages go back to their queue, in order


def _each(channel: Any, queue: str, limit: int | None) -> Iterator[tuple[int, DeadLetter]]:
    seen = 0
    while limit is None or seen < limit:
        method, _props, raw = channel.basic_get(xq_name(q_name(queue)), auto_ack=False)
        if method is None:
            return
        seen += 1
        yield method.delivery_tag, parse(queue, raw)


def list_dead_letters(amqp_url: str, queues: list[str], limit: int = 1000) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    with _channel(amqp_url) as channel:
        for queue in queues:
            letters.extend(letter for _tag, letter in _each(channel, queue, limit))
    return letters


def requeue(broker: Any, amqp_url: str, queues: list[str], matches: Callable[[DeadLetter], bool]) -> list[DeadLetter]:
    """Put matching dead letters back on their queues; returns those requeued."""
    done: list[DeadLetter] = []
    with _channel(amqp_url) as channel:
        for queue in queues:
            for tag, letter in _each(channel, queue, None):
                if not matches(letter):
                    continue
                broker.declare_queue(letter.queue, ensure=True)
                broker.publish([Outgoing(letter.queue, requeue_body(letter), letter.message_id or f"requeued-{tag}")])
                channel.basic_ack(tag)  # only once the message is safely back on its queue
                done.append(letter)
    return done


def purge(amqp_url: str, queues: list[str]) -> dict[str, int]:
    counts = {}
    with _channel(amqp_url) as channel:
        for queue in queues:
            result = channel.queue_purge(xq_name(q_name(queue)))
            counts[q_name(queue)] = result.method.message_count
    return counts
