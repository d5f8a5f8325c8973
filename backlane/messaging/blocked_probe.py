"""Asking RabbitMQ whether it blocks publishers now, and why (see :mod:`backlane.messaging.blocking`)."""

from __future__ import annotations

from typing import Any

import pika
import pika.exceptions

from backlane.messaging.blocking import BLOCKED_CLOSE_WAIT, PROBE_ROUTING_KEY, BrokerBlocked
from backlane.messaging.publishing import BatchPublisher, Outgoing


def _parameters(url: str, timeout: float) -> list[Any]:
    params = [pika.URLParameters(u) for u in url.split(";") if u.strip()]
    for param in params:
        param.connection_attempts = 1
        param.socket_timeout = param.stack_timeout = timeout
        param.blocked_connection_timeout = BLOCKED_CLOSE_WAIT
    return params


def blocked_reason(url: str, timeout: float = 3.0) -> str | None:
    """RabbitMQ's reason when it blocks publishers now ("low on memory", "low on disk"; "" when
    it gave none), else None.

    Raises what pika raises when RabbitMQ cannot be reached or refuses us (the caller reports
    that as it already does). Costs one round trip when RabbitMQ is not blocking."""
    publisher = BatchPublisher(_parameters(url, timeout), blocked_limit=0.0)
    try:
        return probe_blocked(publisher)
    finally:
        publisher.close()


def probe_blocked(publisher: Any) -> str | None:
    """RabbitMQ's reason when it blocks ``publisher`` (a :class:`BatchPublisher` with
    ``blocked_limit=0``), else None: two confirmed publishes of nothing. RabbitMQ still takes the
    publish that makes it block a connection (and confirms it); the one after it is never read,
    and ``connection.blocked`` comes instead of its confirm."""
    for _ in range(2):
        try:
            publisher.publish([Outgoing(PROBE_ROUTING_KEY, b"", "backlane-blocked-probe")])
        except BrokerBlocked as blocked:
            return blocked.reason_text or ""
        except pika.exceptions.ConnectionBlockedTimeout:  # blocked, and pika gave up before the reason came
            return publisher.blocked_reason or ""
        if publisher.blocked_reason is not None:
            return str(publisher.blocked_reason)
    return None
