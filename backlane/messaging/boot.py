"""A worker's or the clock's start: serve, and find a refusal or a wrong queue before any thread runs.

* :func:`check_access` opens one connection now, so a refusal (credentials, vhost, permission)
  shows at start-up rather than at the first publish;
* :func:`check_queues` declares a worker's queues once, from the main thread before its consumer
  threads start, so a queue of the other type stops the worker at boot in one line with status 78.
  Found later by a consumer thread, the same refusal ends the process before it told the dramatiq
  CLI that it booted, and the CLI waits out its whole ``--worker-fork-timeout`` before it notices;
* :class:`ServiceLifecycle` is the middleware that runs both when Dramatiq's worker process boots,
  and stops waiting for RabbitMQ when the worker shuts down, so a SIGTERM during an outage is prompt;
  in a forked worker it first ties the process to its parent (:mod:`backlane.core.worker_process`):
  it dies with it, and the process group's SIGTERM is one clean stop.

An unreachable RabbitMQ is not an error here: a serving process waits for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeGuard

import pika.exceptions
from dramatiq.broker import Broker
from dramatiq.common import dq_name, q_name
from dramatiq.middleware import Middleware

from backlane.core import worker_process
from backlane.errors import QueueMismatch
from backlane.messaging.broker_faults import refusal_of
from backlane.messaging.links import probe
from backlane.problems import broker_refused

if TYPE_CHECKING:
    from backlane.messaging.broker import BacklaneBroker


def check_access(broker: BacklaneBroker) -> None:
    """Open one connection now and close it; a refusal is the broker's :meth:`refused`."""
    connection = probe(broker.url, broker.faults.refused, broker.heartbeat)
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.close()


def check_queues(broker: BacklaneBroker, queue_names: Iterable[str]) -> None:
    """Declare ``queue_names`` (with their delay and dead-letter queues) on a connection of their own."""
    connection = probe(broker.url, broker.faults.refused, broker.heartbeat)
    if connection is None:
        return
    try:
        channel = connection.channel()
        for name in sorted({q_name(queue) for queue in queue_names}):
            broker.topology.declare_all(channel, name, broker.queue_arguments(name))
    except QueueMismatch as mismatch:
        broker.faults.refused(mismatch)
    except (pika.exceptions.AMQPError, OSError) as exc:
        reason = refusal_of(exc)  # e.g. no permission on one of the queues
        if reason is not None:
            broker.faults.refused(broker_refused(broker.url, reason))
        # else gone while declaring: the consumers declare again once it is back
    finally:
        with contextlib.suppress(Exception):
            connection.close()


class ServiceLifecycle(Middleware):
    """Dramatiq's worker process boots: serve (wait out outages) and check access at once;
    the worker boots its threads: check its queues; the worker shuts down: stop waiting for RabbitMQ."""

    def after_process_boot(self, broker: Broker) -> None:
        worker_process.tie_to_parent()
        if _serves(broker):
            broker.serve()
            broker.check_access()

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        if _serves(broker) and broker.serving:
            wanted = getattr(worker, "consumer_whitelist", None)  # dramatiq's --queues
            declared = broker.get_declared_queues()
            broker.check_queues(q for q in declared if not wanted or q in wanted or dq_name(q) in wanted)

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        if _serves(broker) and broker.serving:
            broker.stop_waiting()


def _serves(broker: Broker) -> TypeGuard[BacklaneBroker]:
    """Whether ``broker`` is a BacklaneBroker (found by what it has: this module cannot import it)."""
    return callable(getattr(broker, "serve", None)) and callable(getattr(broker, "stop_waiting", None))
