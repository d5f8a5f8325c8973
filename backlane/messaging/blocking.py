"""A broker that blocks publishers is a known state, not a hang.

RabbitMQ under a memory or disk alarm stops reading from every connection that publishes
(``connection.blocked``, with its reason: "low on memory", "low on disk"). A publish then
waits, silently, until the alarm clears. backlane turns that into something one can see:

* :func:`~backlane.messaging.blocked_probe.blocked_reason` asks RabbitMQ directly: confirmed
  publishes of an empty message to a routing key no queue has, on a connection of its own. A healthy node confirms it in
  one round trip (nothing is stored); a blocked one answers ``connection.blocked`` with its
  reason instead. ``backlane status``, the worker's ``/health`` and every command that
  publishes use it;
* :func:`blocked_problem` is the one line a command prints (exit status 1): RabbitMQ is
  blocking publishers, and why (the memory or the disk alarm), nothing was sent;
* :class:`Blocks` is what a long-running process knows: every publisher connection it opens
  registers pika's blocked/unblocked callbacks, and the state is logged once when it begins
  and once when it ends (:func:`watch`).

A worker or the clock waits a block out on the connection it published on (the message is
already in RabbitMQ's socket: sent again on another connection it would arrive twice); the
clock then sends again, stamped with the time it leaves, a tick that waited that long
(:meth:`backlane.messaging.broker.BacklaneBroker.enqueue`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import pika
import pika.exceptions

from backlane.errors import BacklaneError, redact_url

logger = logging.getLogger("backlane.broker")

#: The routing key the blocked probe publishes to: no queue is ever bound to it, so nothing is stored.
PROBE_ROUTING_KEY = "backlane.blocked-probe"
#: A probe's connection, once blocked, is closed by pika after this many seconds (closing it
#: politely would wait for a CloseOk RabbitMQ never sends while it blocks the connection).
BLOCKED_CLOSE_WAIT = 0.25
#: RabbitMQ's reasons, and the alarm each one means.
ALARMS = {"low on memory": "its memory alarm is on", "low on disk": "its disk alarm is on"}


def alarm_of(reason: str | None) -> str:
    """What ``reason`` (RabbitMQ's words in ``connection.blocked``) means, for a person."""
    text = (reason or "").strip()[:200] or "no reason given"
    alarm = ALARMS.get(text.lower())
    return f"{text}: {alarm}" if alarm else text


def blocked_line(url: str, reason: str | None) -> str:
    """The one line saying RabbitMQ at ``url`` blocks publishers, and why."""
    shown = redact_url(url.split(";")[0])
    return f"RabbitMQ at {shown} is blocking publishers ({alarm_of(reason)}); nothing was sent"


def blocked_problem(url: str, reason: str | None) -> Any:
    """:func:`blocked_line` as the :class:`~backlane.errors.Problem` a command ends with (status 1)."""
    from backlane.problems import EXIT_UNAVAILABLE, Problem

    return Problem(blocked_line(url, reason), EXIT_UNAVAILABLE)


class BrokerBlocked(BacklaneError, pika.exceptions.AMQPConnectionError):
    """RabbitMQ blocked this connection's publishing (``connection.blocked``) for longer than
    its publisher was told to wait. A connection error to pika's callers (classified as the
    broker being unavailable); a command says :func:`blocked_line`."""

    kind = "broker_blocked"

    def __init__(self, reason: str | None) -> None:
        super().__init__(f"RabbitMQ is blocking publishers ({alarm_of(reason)})")
        self.reason_text = reason


class Blocks:
    """Whether this process's publishers are blocked, and why; said once per block."""

    def __init__(self, url: str) -> None:
        self.url = redact_url(url.split(";")[0])
        self._lock = threading.Lock()
        self._blocked: set[int] = set()
        self.reason: str | None = None
        self.since: float | None = None

    @property
    def active(self) -> bool:
        return bool(self._blocked)

    def blocked(self, connection_id: int, reason: str | None) -> None:
        with self._lock:
            first = not self._blocked
            self._blocked.add(connection_id)
            if first:
                self.reason, self.since = reason, time.monotonic()
        if first:
            logger.warning(
                "RabbitMQ at %s is blocking publishers (%s); waiting for it to unblock", self.url, alarm_of(reason)
            )

    def unblocked(self, connection_id: int) -> None:
        with self._lock:
            if connection_id not in self._blocked:
                return
            self._blocked.discard(connection_id)
            last = not self._blocked
            since = self.since
            if last:
                self.since = None
        if last and since is not None:
            logger.warning("RabbitMQ at %s unblocked publishers after %.0f s", self.url, time.monotonic() - since)


def watch(connection: Any, blocks: Blocks | None, on_blocked: Any = None, on_unblocked: Any = None) -> None:
    """Register pika's blocked/unblocked callbacks on a ``pika.BlockingConnection``: ``blocks``
    learns of them (and so the process's log), and so do the optional callables."""
    key = id(connection)

    def blocked(_connection: Any, frame: Any) -> None:
        reason = getattr(getattr(frame, "method", None), "reason", None)
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else reason
        if blocks is not None:
            blocks.blocked(key, reason if isinstance(reason, str) else None)
        if on_blocked is not None:
            on_blocked(reason if isinstance(reason, str) else None)

    def unblocked(_connection: Any, _frame: Any) -> None:
        if blocks is not None:
            blocks.unblocked(key)
        if on_unblocked is not None:
            on_unblocked()

    with contextlib.suppress(AttributeError):  # a test double without the callbacks
        connection.add_on_connection_blocked_callback(blocked)
        connection.add_on_connection_unblocked_callback(unblocked)
