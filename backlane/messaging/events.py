"""Events for other services: JSON bodies on a durable fanout exchange.

Another service binds its own queue to the exchange and receives every event,
so backlane never needs to know its subscribers. Publishing goes through the
broker's confirmed, ``mandatory`` batch publisher; so that an event always has
somewhere to go (an unroutable message is an error, never a silent drop), the
exchange has one bounded queue of its own that keeps the most recent events.

With ``masstransit_namespace`` set, every event is also published the way a
MassTransit (.NET) publisher would: in MassTransit's JSON envelope, camelCase,
to a durable fanout exchange named after its message type
(``Namespace:CatalogSectionRefreshed``), so a MassTransit consumer of that
message type receives it with no code of ours on its side.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dramatiq.middleware import CurrentMessage
from pydantic import BaseModel

from backlane.messaging import conversation, masstransit
from backlane.messaging.broker_faults import declare_checked
from backlane.messaging.publishing import Outgoing


@dataclass(frozen=True)
class EventTopology:
    exchange: str
    #: A durable queue bound to the exchange that keeps the latest ``recent_max_length`` events.
    recent_queue: str
    recent_max_length: int
    #: Also publish each event in MassTransit's envelope to ``Namespace:EventType`` ("" = off).
    masstransit_namespace: str = ""
    #: The event types published here, so their MassTransit exchanges exist before the first event.
    event_types: tuple[str, ...] = ()

    def masstransit_exchange(self, event_type: str) -> str:
        return f"{self.masstransit_namespace}:{event_type}"


_declared: set[tuple[int, EventTopology, tuple[str, ...]]] = set()
_lock = threading.Lock()


def declare(broker: Any, topology: EventTopology, event_types: Iterable[str] = ()) -> None:
    """Declare the fanout exchange and its recent-events queue (idempotent); with a MassTransit
    namespace, also the exchange of each of ``event_types`` with a recent queue of its own."""
    exchanges = [(topology.exchange, topology.recent_queue)]
    event_types = tuple(sorted({*event_types, *topology.event_types}))
    if topology.masstransit_namespace:
        exchanges += [
            (topology.masstransit_exchange(t), f"{topology.masstransit_exchange(t)}.recent") for t in event_types
        ]

    def run() -> None:
        channel = broker.channel
        arguments: dict[str, Any] = {"x-max-length": topology.recent_max_length, "x-overflow": "drop-head"}
        if getattr(broker, "queue_type", "classic") == "quorum":
            arguments["x-queue-type"] = "quorum"
        for exchange, recent_queue in exchanges:
            channel.exchange_declare(exchange=exchange, exchange_type="fanout", durable=True)
            declare_checked(channel, recent_queue, arguments)
            channel.queue_bind(queue=recent_queue, exchange=exchange)

    broker.with_reconnect(run, f"declare exchange {topology.exchange}")
    with _lock:
        _declared.add((id(broker), topology, event_types if topology.masstransit_namespace else ()))


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
    """Publish one event, persistent, and wait for RabbitMQ's confirm; returns its message id.

    With a MassTransit namespace the envelope copy goes in the same confirmed batch."""
    event_type = type(event).__name__
    event_types = tuple(sorted({event_type, *topology.event_types})) if topology.masstransit_namespace else ()
    with _lock:
        known = (id(broker), topology, event_types) in _declared
    if not known:
        declare(broker, topology, event_types)
    message_id = str(uuid.uuid4())
    document = event.model_dump(mode="json")
    body = json.dumps(document, separators=(",", ":")).encode()
    headers = {"event": event_type, "version": getattr(event, "version", None)}
    batch = [Outgoing(routing_key, body, message_id, headers=headers, exchange=topology.exchange)]
    if topology.masstransit_namespace:
        exchange = topology.masstransit_exchange(event_type)
        batch.append(
            Outgoing(
                "",
                masstransit.envelope(
                    camel_case(document), exchange, message_id=message_id, conversation=_conversation()
                ),
                message_id,
                exchange=exchange,
                content_type=masstransit.ENVELOPE_CONTENT_TYPE,
            )
        )
    broker.publish(batch, redeclare=lambda: declare(broker, topology, event_types))
    return message_id


def _conversation() -> dict[str, Any] | None:
    """Published while a MassTransit message is consumed: its conversation (see conversation.py)."""
    found = conversation.of_message(CurrentMessage.get_current_message())
    return conversation.transferred(found) if found is not None else None


def camel_case(document: Any) -> Any:
    """MassTransit's System.Text.Json writes and matches camelCase names: refreshed_at → refreshedAt."""
    if isinstance(document, dict):
        return {_camel(str(k)): camel_case(v) for k, v in document.items()}
    if isinstance(document, list):
        return [camel_case(v) for v in document]
    return document


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
