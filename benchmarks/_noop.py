"""The ceiling's actor: does nothing, on backlane's own broker and middleware.

``dramatiq _noop --processes P --threads T`` (with benchmarks/ on PYTHONPATH)
runs it with exactly the worker settings of ``dramatiq actors scheduler``, so
draining N of its messages measures what RabbitMQ + Dramatiq alone allow on
this machine: the ceiling of any per-item actor.
"""

from __future__ import annotations

import dramatiq

from backlane.app import setup

broker = setup()

#: Its own queue, so it never mixes with a pipeline's messages.
NOOP_QUEUE = "bench_noop"


@dramatiq.actor(queue_name=NOOP_QUEUE, broker=broker, max_retries=0)
def noop(item: int) -> None:
    """Nothing: the cost measured is the broker's and Dramatiq's alone."""
