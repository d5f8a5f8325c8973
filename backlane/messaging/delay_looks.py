"""When a delay-queue consumer looks for delayed messages whose time has come.

Dramatiq's consumer thread keeps each delivery from ``<queue>.DQ`` (a retry, a status
poll, any delayed message) in memory until its ``eta``, and moves the due ones on only
when its consumer returns: after a delivery, or after the consumer's inactivity timeout
with nothing delivered. With pika's own consumer generator that timeout is fixed: at
Dramatiq's 1 s every retry ran up to a second late, and at 100 ms (what
``BACKLANE_BROKER__DELAY_POLL_MS`` once did) the twelve idle delay-queue consumers of a
worker process woke 120 times a second between them, about 18 ms of CPU a second per
process (benchmarks/idle_cost.py).

:func:`deliveries` is pika's consumer loop with the timeout chosen per wait instead: the
consumer remembers the etas of what it handed out (:class:`DueTimes`) and returns empty
when the earliest one is due, but not sooner than ``least_gap`` after its last empty
return; holding nothing, it waits the worker's timeout. It uses pika's public
``basic_consume``, ``add_on_cancel_callback`` and ``process_data_events`` only.
"""

from __future__ import annotations

import collections
import heapq
import math
import time
from collections.abc import Iterator
from typing import Any

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

#: What the consumer generator yields: (method, properties, body), or three Nones when it
#: comes back empty-handed (Dramatiq's consumer thread then moves the due messages on).
Delivery = tuple[Any, Any, Any]
EMPTY: Delivery = (None, None, None)


class DueTimes:
    """The etas (epoch seconds) of the delayed messages a consumer handed out, earliest first."""

    def __init__(self, idle_wait: float, least_gap: float) -> None:
        self.idle_wait = idle_wait
        self.least_gap = least_gap
        self._etas: list[float] = []
        self._last_look = float("-inf")

    def held(self, eta: Any) -> None:
        """A delivery with ``eta`` (epoch milliseconds, as Dramatiq's option) was handed out;
        anything that is not a finite number counts as due now (Dramatiq moves a NaN on at once;
        kept in the heap, it would never be popped and the consumer would look every least_gap)."""
        number = isinstance(eta, (int, float)) and not isinstance(eta, bool) and math.isfinite(eta)
        due = eta / 1000 if number else time.time()
        heapq.heappush(self._etas, due)

    def looked(self) -> None:
        """The consumer came back empty: its thread moved on every message due by now."""
        now = time.time()
        self._last_look = time.monotonic()
        while self._etas and self._etas[0] <= now:
            heapq.heappop(self._etas)

    def wait(self) -> float:
        """Seconds until the next empty return: the earliest eta, no sooner than ``least_gap``
        after the last look, never longer than ``idle_wait``."""
        if not self._etas:
            return self.idle_wait
        until_due = max(0.0, self._etas[0] - time.time())
        until_allowed = self._last_look + self.least_gap - time.monotonic()
        return min(self.idle_wait, max(until_due, until_allowed, 0.0))


def deliveries(
    connection: BlockingConnection, channel: BlockingChannel, queue_name: str, due: DueTimes
) -> Iterator[Delivery]:
    """Deliveries from ``queue_name`` as pika's ``channel.consume`` yields them, coming back
    empty when :meth:`DueTimes.wait` says; ends when RabbitMQ cancels the consumer (the queue
    was deleted), as pika's does, so Dramatiq restarts it."""
    arrived: collections.deque[Delivery] = collections.deque()
    cancelled: list[Any] = []
    channel.add_on_cancel_callback(cancelled.append)
    channel.basic_consume(queue_name, lambda _ch, method, properties, body: arrived.append((method, properties, body)))
    while True:
        if arrived:
            yield arrived.popleft()
            continue
        if cancelled:
            return
        deadline = time.monotonic() + due.wait()
        while not arrived and not cancelled:
            connection.process_data_events(time_limit=max(0.0, deadline - time.monotonic()))
            if channel.is_closed:  # closed by RabbitMQ: the consumer restarts, as on any channel error
                raise pika.exceptions.ChannelWrongStateError(f"the channel consuming {queue_name} was closed")
            if not arrived and not cancelled and time.monotonic() >= deadline:
                due.looked()
                yield EMPTY
                break
