"""The dead-letter commands' own AMQP connection, and reading an ``.XQ`` without consuming it.

The commands read letters with ``basic.get`` and leave them unacked until they are safely
requeued (or give them back), so an interrupted command leaves every dead letter where it
was. Whatever goes wrong on the way is a one-line :class:`~backlane.errors.Problem`, the
same lines as every other command's (:mod:`backlane.problems`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq.errors
import pika
import pika.exceptions
from dramatiq.common import q_name, xq_name

from backlane.errors import EXIT_UNAVAILABLE, EXIT_USAGE, Problem, redact_url
from backlane.messaging.links import url_parameters
from backlane.operations.dead_letters.letter import DeadLetter, parse
from backlane.problems import BROKER_URL, broker_cause, broker_problem, broker_unreachable


@contextmanager
def connect(
    amqp_url: str, timeout: float | None = None, heartbeat: int | None = None
) -> Iterator[pika.BlockingConnection]:
    """A connection to RabbitMQ whose failures come out as one-line :class:`Problem`;
    ``timeout`` bounds each connection attempt, seconds; ``heartbeat``: the AMQP heartbeat it
    asks for (:func:`backlane.messaging.links.ask_heartbeat`)."""
    setting = f"{BROKER_URL} ({redact_url(amqp_url)})"
    try:
        params = url_parameters(amqp_url, heartbeat)
    except ValueError as exc:
        raise Problem(f"{setting} is not a valid AMQP URL: {exc}", EXIT_USAGE) from None
    for param in params:
        param.connection_attempts = 1
        if timeout is not None:
            param.socket_timeout = param.stack_timeout = timeout
    pika_logger = logging.getLogger("pika")
    level = pika_logger.level
    if not pika_logger.isEnabledFor(logging.DEBUG):
        pika_logger.setLevel(logging.CRITICAL)  # the one-line errors below say it all (-v shows pika's)
    try:
        try:
            connection = pika.BlockingConnection(params)
        except (pika.exceptions.AMQPError, OSError) as exc:  # OSError: e.g. a host name that does not resolve
            raise (broker_problem(exc, amqp_url) or broker_unreachable(amqp_url, exc)) from None
        try:
            yield connection
        except (pika.exceptions.AMQPConnectionError, dramatiq.errors.ConnectionError) as exc:
            raise Problem(
                f"lost the connection to RabbitMQ at {setting}: {broker_cause(exc)}", EXIT_UNAVAILABLE
            ) from None
        except pika.exceptions.AMQPChannelError as exc:
            raise Problem(f"RabbitMQ refused an operation ({setting}): {broker_cause(exc)}", EXIT_UNAVAILABLE) from None
        finally:
            if connection.is_open:
                connection.close()  # unacked messages go back to their queue, in order
    finally:
        pika_logger.setLevel(level)


def count_letters(connection: Any, queue: str, missing_ok: bool) -> int | None:
    """Dead letters in ``queue``'s .XQ now (None when it does not exist and that is fine)."""
    name = xq_name(q_name(queue))
    channel = connection.channel()  # of its own: a 404 closes the channel it happens on
    try:
        count = int(channel.queue_declare(name, passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 404:
            raise
        if missing_ok:
            return None
        raise Problem(
            f"no dead-letter queue {name!r} on RabbitMQ: is {q_name(queue)!r} a queue of this deployment? "
            "If it is, run `backlane declare-queues` to create it",
            EXIT_USAGE,
        ) from None
    channel.close()
    return count


#: AMQP's largest prefetch count (a 16-bit field): the letters one consumer can hold unacked.
MAX_PREFETCH = 65_535
#: A consumer of an .XQ that gets nothing for this long takes it as empty, seconds.
EMPTY_AFTER = 2.0


def each_letter(channel: Any, queue: str, limit: int) -> Iterator[tuple[int, DeadLetter]]:
    """At most ``limit`` dead letters of ``queue`` with their delivery tags, unacked (they stay
    on the broker until acked or returned).

    Read with ``basic.consume`` and a prefetch of exactly the letters wanted, so RabbitMQ pushes
    them in one stream instead of one ``basic.get`` round trip each (10,000 letters took 16-23 s
    that way); past AMQP's prefetch limit the rest is read with ``basic.get``. ``limit`` is the
    count the caller read from the queue: a letter taken meanwhile by someone else ends the
    stream after :data:`EMPTY_AFTER` seconds, never with more than the queue holds."""
    xq = xq_name(q_name(queue))
    window = min(limit, MAX_PREFETCH)
    read = 0
    if window > 1:
        channel.basic_qos(prefetch_count=window)
        try:
            for method, props, raw in channel.consume(xq, auto_ack=False, inactivity_timeout=EMPTY_AFTER):
                if method is None:
                    return  # nothing for EMPTY_AFTER: the queue has no more
                read += 1
                yield method.delivery_tag, parse(queue, raw, props)
                if read >= window:
                    break
        finally:
            with contextlib.suppress(pika.exceptions.AMQPError):
                if channel.is_open:
                    channel.cancel()  # any letter pushed and not handed out goes back, unread
    for _ in range(limit - read):
        method, props, raw = channel.basic_get(xq, auto_ack=False)
        if method is None:
            return
        yield method.delivery_tag, parse(queue, raw, props)


def return_all(channel: Any) -> None:
    """Give back every letter read on ``channel`` explicitly (``basic.nack`` with requeue)
    rather than by closing it: on RabbitMQ 4.3+ an explicit return does not count toward a
    quorum queue's delivery limit, a channel closed with them unacked does (docs/scaling.md)."""
    with contextlib.suppress(pika.exceptions.AMQPError):
        if channel.is_open:
            channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
