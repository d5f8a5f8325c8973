"""Waiting RabbitMQ out, and giving up on a refusal: the broker's answer to a fault.

Every operation of the broker on RabbitMQ (publish, consume, declare) runs through
:meth:`Reconnector.run`. A connection error is an outage: retried with capped backoff, said once
(:class:`~backlane.messaging.broker_faults.OutageLog`); a command gives up after
``reconnect_timeout``, a *serving* process (worker, clock) waits however long, until it shuts down.
A refusal (credentials, vhost, permission) or a queue of the wrong type is never retried:
the error is raised, and a serving process ends with one line (:meth:`Reconnector.refused`).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import NoReturn, TypeVar

import pika.exceptions
from dramatiq.errors import BrokerConnectionError

from backlane.core.startup import WORKER, process_role, refuse
from backlane.errors import Problem, QueueMismatch
from backlane.messaging.blocked_probe import blocked_reason
from backlane.messaging.blocking import BrokerBlocked, blocked_problem
from backlane.messaging.broker_faults import OutageLog, _causes, exit_refused, refusal_of
from backlane.problems import broker_refused

logger = logging.getLogger("backlane.broker")

T = TypeVar("T")
#: A publish RabbitMQ nacked (a quorum queue losing its leader mid-publish) is sent again, like one
#: whose confirm never came: a duplicate is harmless, processing is idempotent by row state.
CONNECTION_ERRORS = (
    BrokerConnectionError,
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.NackError,
)
#: Longest pause between two attempts to reach RabbitMQ, seconds.
MAX_RECONNECT_PAUSE = 5.0
#: First pause between two attempts, seconds (doubled each time up to :data:`MAX_RECONNECT_PAUSE`).
FIRST_RECONNECT_PAUSE = 0.2


class Reconnector:
    """Runs operations on RabbitMQ through outages; ``drop_broken`` lets go of this thread's broken
    connections before the next attempt, ``forget`` of a channel RabbitMQ closed."""

    def __init__(
        self,
        url: str,
        reconnect_timeout: float,
        *,
        drop_broken: Callable[[], None],
        forget: Callable[[], None],
    ) -> None:
        self.url = url
        self.reconnect_timeout = reconnect_timeout
        self.outage = OutageLog(url)
        #: True in a worker or clock process: wait for RabbitMQ for ever, exit on a refusal.
        self.serving = False
        self.stopping = threading.Event()
        self._drop_broken = drop_broken
        self._forget = forget

    def refused(self, refused: Problem | QueueMismatch) -> NoReturn:
        """Raise ``refused``; in a serving process, end it with the one line instead."""
        if self.serving:
            if threading.current_thread() is threading.main_thread() and process_role() == WORKER:
                refuse(str(refused), WORKER)  # a worker's main thread is booting: said once for its siblings
            exit_refused(refused)
        raise refused

    def run(self, operation: Callable[[], T], what: str) -> T:
        """Run ``operation``, retrying on connection errors with capped backoff.

        A serving process (worker, clock) retries for as long as RabbitMQ is away, until
        the worker shuts down; anything else gives up after ``reconnect_timeout``. An outage
        is logged once, and once when it ends. A refusal (credentials, vhost, permission)
        is never retried: a refusal (:func:`backlane.problems.broker_refused`), or the end of a serving process."""
        deadline = time.monotonic() + self.reconnect_timeout
        pause = FIRST_RECONNECT_PAUSE
        for attempt in itertools.count(1):
            try:
                result = operation()
            except QueueMismatch as mismatch:
                self._forget()  # RabbitMQ closed the channel
                self.refused(mismatch)
            except CONNECTION_ERRORS as exc:
                reason = refusal_of(exc)
                if reason is not None:
                    self.refused(broker_refused(self.url, reason))
                self._drop_broken()
                if not self.serving and blocked_by(exc):
                    # Reconnecting cannot help while RabbitMQ blocks publishers: one line, now.
                    raise blocked_problem(self.url, self.blocked_reason(exc)) from None
                if attempt == 1:
                    continue  # a connection that died while idle (pika notices on use): try a fresh one at once
                self.outage.down(exc, what)
                if self.stopping.is_set() or (not self.serving and time.monotonic() + pause > deadline):
                    if not self.stopping.is_set():
                        logger.error("RabbitMQ unreachable for %.0fs; giving up to %s", self.reconnect_timeout, what)
                    raise
                self.stopping.wait(pause)
                pause = min(pause * 2, MAX_RECONNECT_PAUSE)
            else:
                self.outage.up()
                return result
        raise AssertionError("unreachable: itertools.count never ends")

    def blocked_reason(self, exc: BaseException) -> str:
        """Why RabbitMQ blocks publishers: the reason ``exc`` carries, else asked again (one probe)."""
        for cause in _causes(exc):
            if isinstance(cause, BrokerBlocked) and cause.reason_text:
                return cause.reason_text
        try:
            return blocked_reason(self.url, min(self.reconnect_timeout, 3.0)) or ""
        except Exception:  # gone meanwhile: the line still says it was blocking
            return ""


def blocked_by(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is RabbitMQ blocking our publishing."""
    return any(isinstance(c, BrokerBlocked | pika.exceptions.ConnectionBlockedTimeout) for c in _causes(exc))
