"""Declaring every queue up front.

Dramatiq declares a queue lazily, the first time a process consumes or
publishes to it. A service publishing OrderCreated without Dramatiq would then
hit a queue that does not exist yet, so deployments declare them all once
(``backlane declare-queues``, run by the migrate service of compose.yaml).
"""

from __future__ import annotations

import functools

from backlane.messaging.broker import BacklaneBroker


def declare_all(broker: BacklaneBroker) -> list[str]:
    """Declare each actor's queue with its delay and dead-letter queues; returns their names."""
    names = sorted({actor.queue_name for actor in broker.actors.values()})
    for name in names:
        broker.with_reconnect(functools.partial(broker.declare_queue, name, ensure=True), f"declare {name}")
    return names
