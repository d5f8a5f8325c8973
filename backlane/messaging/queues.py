"""Declaring every queue up front.

Dramatiq declares a queue lazily, the first time a process consumes or
publishes to it. A service publishing OrderCreated without Dramatiq would then
hit a queue that does not exist yet, so deployments declare them all once
(``backlane declare-queues``, run by the migrate service of compose.yaml).
"""

from __future__ import annotations

from typing import Any


def declare_all(broker: Any) -> list[str]:
    """Declare each actor's queue with its delay and dead-letter queues; returns their names."""
    names = sorted({actor.queue_name for actor in broker.actors.values()})
    for name in names:
        if hasattr(broker, "with_reconnect"):
            broker.with_reconnect(lambda n=name: broker.declare_queue(n, ensure=True), f"declare {name}")
        else:
            broker.declare_queue(name)
    return names
