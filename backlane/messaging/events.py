"""Events for other services: JSON bodies on a durable fanout exchange.

Another service binds its own queue to the exchange and receives every event,
so backlane never needs to know its subscribers. Publishing goes through the
broker's confirmed, ``mandatory`` batch publisher; so that an event always has
somewhere to go (an unroutable message is an error, never a silent drop), the
exchange has one bounded queue of its own that keeps the most recent events.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from backlane.messaging.publishing import Outgoing


@dataclass(frozen=True)
class EventTopology:
    exchange: str
    #: A durable queue bound to the exchange that keeps the latest ``recent_max_length`` events.
    recent_queue: str
    recent_max_length: int


_declared: set[tuple[int, EventTopology]] = set()
_lock = threading.Lock()


def declare(broker: Any, topology: EventTopology) -> None:
    """Declare the fanout exchange and its recent-events queue (idempotent)."""

    def run() -> None:
        channel = broker.channel
        channel.exchange_declare(exchange=topology.exchange, exchange_type="fanout", durable=True)
        arguments: dict[str, Any] = {"x-max-length": topology.recent_max_length, "x-overflow": "drop-head"}
        if getattr(broker, "queue_type", "classic") == "quorum":
            arguments["x-queue-type"] = "quorum"
        channel.queue_declare(queue=topology.recent_queue, durable=True, arguments=arguments)
        channel.queue_bind(queue=topology.recent_queue, exchange=topology.exchange)

    broker.with_reconnect(run, f"declare exchange {topology.exchange}")
    with _lock:
        _declared.add((id(broker), topology))


def declare_pipeline_events(registry: Iterable[Any], runtime: Any) -> list[EventTopology]:
    """Declare every registered pipeline's event exchanges and recent queues (``Pipeline.events``)."""
    declared: list[EventTopology] = []
    for reg in registry:
        events = reg.pipeline.events
        if events is None:
            continue
        for topology in events(runtime.config(reg.pipeline)):
            declare(runtime.broker, topology)
            declared.append(topology)
    return declared


def publish_event(broker: Any, topology: EventTopology, event: BaseModel, routing_key: str = "") -> str:
    """Publish one event, persistent, and wait for RabbitMQ's confirm; returns its message id."""
    with _lock:
        known = (id(broker), topology) in _declared
    if not known:
        declare(broker, topology)
    message_id = str(uuid.uuid4())
    body = json.dumps(event.model_dump(mode="json"), separators=(",", ":")).encode()
    headers = {"event": type(event).__name__, "version": getattr(event, "version", None)}
    outgoing = Outgoing(routing_key, body, message_id, headers=headers, exchange=topology.exchange)
    broker.publish([outgoing], redeclare=lambda: declare(broker, topology))
    return message_id
