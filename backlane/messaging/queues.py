"""Declaring every queue up front.

Dramatiq declares a queue lazily, the first time a process consumes or
publishes to it. A service publishing OrderCreated without Dramatiq would then
hit a queue that does not exist yet, so deployments declare them all once
(``backlane declare-queues``, run by the migrate service of compose.yaml).
An inbox that takes MassTransit publishes gets its message-type exchange declared
and bound too, so a .NET service's publish is kept before any worker ran.
"""

from __future__ import annotations

import functools

from backlane.messaging.broker import BacklaneBroker


def declare_all(broker: BacklaneBroker) -> list[str]:
    """Declare each actor's queue with its delay and dead-letter queues; returns their names."""
    names = sorted({actor.queue_name for actor in broker.actors.values()})
    for name in names:
        broker.with_reconnect(functools.partial(broker.declare_queue, name, ensure=True), f"declare {name}")
    for inbox in broker.masstransit_inboxes.values():
        # Again even when the queue was declared already: an operator may have deleted the exchange.
        broker.with_reconnect(lambda inbox=inbox: inbox.declare(broker.channel), f"declare {inbox.exchange}")  # type: ignore[misc]
    return names
