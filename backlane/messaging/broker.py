"""Dramatiq's RabbitMQ broker, made safe for production use.

:class:`BacklaneBroker` is :class:`dramatiq.brokers.rabbitmq.RabbitmqBroker` composed with one unit
per concern:

* connections (:mod:`backlane.messaging.links`): a cluster is several URLs separated by ';'. Each
  process starts at a node of its own (a random rotation of the list, so connections spread), and
  a node whose connection died goes to the back of the list, so reconnecting tries the others first;
* faults (:mod:`backlane.messaging.reconnect`): a worker or the clock (after :meth:`BacklaneBroker.serve`,
  which ``dramatiq`` worker processes and backlane's periodiq scheduler call) waits for RabbitMQ however
  long it is away, with capped backoff, saying so once per outage; a command gives up after
  ``broker.reconnect_timeout``. A wrong password, vhost or permission is never retried as an outage:
  one line naming ``BACKLANE_BROKER__URL`` (:mod:`backlane.messaging.broker_faults`), and a worker or
  clock exits;
* queues (:mod:`backlane.messaging.topology`): quorum queues when ``broker.queue_type`` says so, for
  every queue it declares (work, delay, dead-letter); a queue that exists with the other type is one
  line (:class:`~backlane.errors.QueueTypeMismatch`) naming the migration, not a retried 406;
* the consumer (:mod:`backlane.messaging.consumer`): dead letters that carry their reason
  (:mod:`backlane.messaging.deadletter`), and a delivery whose connection has gone is neither acked
  nor dead-lettered on the connection that replaced it: RabbitMQ delivers it again;
* publishing (:mod:`backlane.messaging.outbox`, :mod:`backlane.messaging.publishing`): publisher
  confirms always on, ``mandatory`` publishing, and batches that wait for their confirms together;
  a clock tick sent after an outage carries the time it was sent, so the worker runs it;
* signals (:mod:`backlane.messaging.signals`): middleware hooks called only where they exist, and every
  message it publishes with options signed (:mod:`backlane.messaging.signing`), so a worker can tell
  backlane's own bookkeeping options from a publisher's forgery;
* the boot check (:mod:`backlane.messaging.boot`): a refusal or a queue of the wrong type stops a
  worker at start, in one line.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import pendulum
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.message import Message
from dramatiq.middleware import Middleware

from backlane.messaging import boot
from backlane.messaging.blocked_probe import blocked_reason
from backlane.messaging.blocking import Blocks, blocked_problem
from backlane.messaging.broker_faults import OutageLog, QuietConsumerRestarts, quiet_pika
from backlane.messaging.consumer import OutageAwareConsumer
from backlane.messaging.links import Links, server_major
from backlane.messaging.masstransit import MassTransitInbox
from backlane.messaging.outbox import Outbox
from backlane.messaging.publishing import Outgoing
from backlane.messaging.reconnect import MAX_RECONNECT_PAUSE, Reconnector
from backlane.messaging.signals import Signals
from backlane.messaging.topology import Topology, xq_arguments

__all__ = [
    "DISCOVER_QUEUE",
    "MAX_RECONNECT_PAUSE",
    "SCHEDULED_AT",
    "BacklaneBroker",
    "server_major",
    "xq_arguments",
]

logger = logging.getLogger("backlane.broker")

T = TypeVar("T")
#: Sent by periodiq with each tick; PeriodiqMiddleware skips a tick this much older than "now".
SCHEDULED_AT = "scheduled_at"

#: A clock tick whose publish RabbitMQ held this long (blocking publishers) is sent again stamped
#: anew, seconds: well under PeriodiqMiddleware's skip delay (30 s), so the first copy, when it is
#: not stale yet, and the second one both run at worst (a discover run twice only claims nothing).
TICK_RESEND_AFTER = 10.0

#: Queue every discover actor runs on, so a per-item backlog never delays a tick.
DISCOVER_QUEUE = "discover"
#: Ticks a worker process holds at once (basic.qos of its ``discover`` consumer), whatever its
#: threads: a tick is cheap to start and rare, and a process that cannot run it (frozen by a
#: GC pause, SIGSTOP or a debugger; every thread stuck) must not sit on the ticks its live
#: siblings would run. Dramatiq's default is 2 x threads.
DISCOVER_PREFETCH = 1


class BacklaneBroker(RabbitmqBroker):
    def __init__(
        self,
        *,
        url: str,
        middleware: list[Middleware] | None = None,
        queue_type: str = "classic",
        dead_letter_ttl_ms: int = 7 * 24 * 3600 * 1000,
        reconnect_timeout: float = 120.0,
        connect_timeout: float | None = None,
        signing_key: bytes | None = None,
        max_body_bytes: int = 1024 * 1024,
        heartbeat: int | None = None,
        delay_poll_ms: int | None = None,
    ) -> None:
        self.signals = Signals(self)  # first: emit_before and emit_after go through it
        super().__init__(url=url, confirm_delivery=True, middleware=middleware)
        self.url = url
        #: The AMQP heartbeat every connection of this broker asks for, seconds (None: RabbitMQ's).
        self.heartbeat = heartbeat
        self.links = Links(self, connect_timeout, heartbeat)
        self.topology = Topology(queue_type, dead_letter_ttl_ms)
        #: Whether RabbitMQ blocks this process's publishers (a memory or disk alarm), and why.
        self.blocks = Blocks(url)
        # A command's publish gives up on a block after its connect timeout; a worker's waits it out.
        self.outbox = Outbox(lambda: self.parameters, blocks=self.blocks, blocked_limit=connect_timeout)
        self._connect_timeout = connect_timeout
        self._unblocked_at = -1.0e9
        self.faults = Reconnector(url, reconnect_timeout, drop_broken=self._drop_broken, forget=self.links.forget)
        #: What this broker signs its messages' options with (None: from this process's settings).
        self.signing_key = signing_key
        #: Largest delivery a consumer reads; a larger one is dead-lettered as it came, unread.
        self.max_body_bytes = max_body_bytes
        #: Least time between two looks of a delay-queue consumer for due messages, milliseconds;
        #: it looks when the earliest message it holds is due (None: pika's fixed timeout).
        self.delay_poll_ms = delay_poll_ms
        quiet_pika()
        self.add_middleware(boot.ServiceLifecycle())

    @property
    def consumer_class(self) -> type[OutageAwareConsumer]:
        return OutageAwareConsumer

    # -- what the units keep, as the broker's own attributes ---------------
    @property
    def queue_type(self) -> str:
        return self.topology.queue_type

    @property
    def dead_letter_ttl_ms(self) -> int:
        return self.topology.dead_letter_ttl_ms

    @property
    def masstransit_inboxes(self) -> dict[str, MassTransitInbox]:
        """Inbox queues that also take MassTransit publishes, by queue name."""
        return self.topology.masstransit_inboxes

    @masstransit_inboxes.setter
    def masstransit_inboxes(self, inboxes: dict[str, MassTransitInbox]) -> None:
        self.topology.masstransit_inboxes = inboxes

    @property
    def reconnect_timeout(self) -> float:
        return self.faults.reconnect_timeout

    @property
    def outage(self) -> OutageLog:
        return self.faults.outage

    @property
    def serving(self) -> bool:
        """True in a worker or clock process: wait for RabbitMQ for ever, exit on a refusal."""
        return self.faults.serving

    # -- middleware signals -------------------------------------------------
    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        self.signals.before(signal, args, kwargs)

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        self.signals.after(signal, args, kwargs)

    # -- long-running processes --------------------------------------------
    def serve(self) -> None:
        """This process is a worker or the clock: from now on an outage is waited out however
        long it lasts, and a refusal (credentials, vhost, permission) ends the process."""
        self.faults.serving = True

    def stop_waiting(self) -> None:
        """The worker shuts down: an operation waiting for RabbitMQ gives up now."""
        self.faults.stopping.set()

    def check_access(self) -> None:
        """Open one connection now, so a refusal shows at start-up rather than at the first publish."""
        boot.check_access(self)

    def check_queues(self, queue_names: Iterable[str]) -> None:
        """Declare a worker's queues once at boot: see :func:`backlane.messaging.boot.check_queues`."""
        boot.check_queues(self, queue_names)

    def demote(self, connection: Any) -> None:
        """The node ``connection`` was on failed: try the others first (:meth:`Links.demote`)."""
        self.links.demote(connection)

    # -- queues -------------------------------------------------------------
    def queue_arguments(self, queue_name: str) -> dict[str, Any]:
        """The arguments of ``queue_name`` and of its delay queue."""
        return self._build_queue_arguments(queue_name)

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        return self.topology.arguments(super()._build_queue_arguments(queue_name))

    def accept_masstransit(self, inbox: MassTransitInbox) -> None:
        """``inbox.queue`` also takes MassTransit publishes: its message-type exchange is declared
        and bound with the queue (by ``backlane declare-queues`` and a worker's start)."""
        self.masstransit_inboxes[inbox.queue] = inbox
        if inbox.queue in self.queues:
            self.queues_pending.add(inbox.queue)  # declared already: bind at the next ensure

    # Dramatiq's RabbitmqBroker._ensure_queue calls these three on this thread's channel.
    def _declare_queue(self, queue_name: str) -> Any:
        return self.topology.declare_queue(self.channel, queue_name, self._build_queue_arguments(queue_name))

    def _declare_dq_queue(self, queue_name: str) -> Any:
        return self.topology.declare_dq_queue(self.channel, queue_name, self._build_queue_arguments(queue_name))

    def _declare_xq_queue(self, queue_name: str) -> Any:
        return self.topology.declare_xq_queue(self.channel, queue_name)

    # -- publishing ---------------------------------------------------------
    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        parent = super().enqueue
        attempts = itertools.count()
        self._refuse_if_blocked()

        def attempt() -> Message:
            sent = message if next(attempts) == 0 else _restamped(message)
            started = time.monotonic()
            result = parent(sent, delay=delay)
            waited = time.monotonic() - started
            if SCHEDULED_AT in sent.options and self.serving and waited >= TICK_RESEND_AFTER:
                # RabbitMQ held the publish (it blocked publishers): the tick it finally took is stamped
                # with the time it was sent, and the worker skips it as stale. The same tick again,
                # stamped now, so it runs; the first one's skip is harmless (and a run of both is too).
                logger.warning(
                    "RabbitMQ held the tick of %s for %.0f s (blocking publishers); sending it again stamped now",
                    message.actor_name,
                    waited,
                )
                parent(_restamped(message), delay=delay)
            return result

        return self.with_reconnect(attempt, f"enqueue {message.actor_name}")

    def _refuse_if_blocked(self) -> None:
        """A command about to publish: one line now when RabbitMQ blocks publishers, rather than a
        publish that waits (asked at most once a second; a worker or the clock waits a block out)."""
        if self.serving or self._connect_timeout is None:
            return
        if time.monotonic() - self._unblocked_at < 1.0:
            return
        try:
            reason = blocked_reason(self.url, self._connect_timeout)
        except Exception:
            return  # unreachable or refused: the publish itself says which, as it always has
        if reason is not None:
            raise blocked_problem(self.url, reason)
        self._unblocked_at = time.monotonic()

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        """A consumer, once RabbitMQ answers: a serving worker waits here through an outage
        instead of failing (and logging) every few seconds per queue."""
        if self.serving:
            thread_logger = logging.getLogger(f"dramatiq.worker.ConsumerThread({queue_name})")
            if not any(isinstance(f, QuietConsumerRestarts) for f in thread_logger.filters):
                thread_logger.addFilter(QuietConsumerRestarts(self.outage))
        if queue_name == DISCOVER_QUEUE:
            prefetch = min(prefetch, DISCOVER_PREFETCH)
        parent = super().consume
        return self.with_reconnect(lambda: parent(queue_name, prefetch, timeout), f"consume {queue_name}")

    def enqueue_many(self, messages: Sequence[Message]) -> None:
        """Publish messages (no delay) and wait once for all their confirms."""
        if not messages:
            return
        self._refuse_if_blocked()
        for queue in {m.queue_name for m in messages}:
            self.with_reconnect(lambda q=queue: self.declare_queue(q, ensure=True), f"declare {queue}")  # type: ignore[misc]
        for message in messages:
            self.emit_before("enqueue", message, None)
        self.publish([Outgoing(m.queue_name, m.encode(), m.message_id) for m in messages])
        for message in messages:
            self.emit_after("enqueue", message, None)

    def publish(self, batch: Sequence[Outgoing], redeclare: Callable[[], None] | None = None) -> None:
        """Publish raw bodies with confirms; re-declare and resend what came back unroutable.

        ``redeclare`` restores the topology of messages sent to an exchange of their own
        (default: declare the queue each routing key names)."""
        self._refuse_if_blocked()
        attempt = self.outbox.attempts(batch, redeclare, self._restore_queue)
        self.with_reconnect(attempt, f"publish {len(batch)} message(s)")

    def _restore_queue(self, queue: str) -> None:
        self.queues_pending.add(queue)
        self.declare_queue(queue, ensure=True)

    def with_reconnect(self, operation: Callable[[], T], what: str) -> T:
        """Run ``operation``, retrying on connection errors: :meth:`Reconnector.run`."""
        return self.faults.run(operation, what)

    def _drop_broken(self) -> None:
        """A connection error: let go of this thread's publisher and connection, demoting their nodes."""
        publisher = self.outbox.current()
        if publisher is not None:
            self.demote(publisher.connection)
            self.outbox.drop(publisher)
        self.links.demote_current()
        self.links.forget()

    def close(self) -> None:
        self.outbox.close()
        super().close()


def _restamped(message: Message) -> Message:
    """A clock tick sent again after an outage: stamped with the time it actually leaves, so the
    worker's PeriodiqMiddleware (which skips ticks older than its skip delay) runs it."""
    if SCHEDULED_AT not in message.options:
        return message
    now = str(pendulum.now().replace(microsecond=0))
    return message.copy(options={**message.options, SCHEDULED_AT: now})
