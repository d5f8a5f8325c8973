"""Dramatiq's RabbitMQ broker, made safe for production use.

On top of :class:`dramatiq.brokers.rabbitmq.RabbitmqBroker` this adds:

* publisher confirms always on, ``mandatory`` publishing, and batches that wait
  for their confirms together (:mod:`backlane.messaging.publishing`);
* outages: a worker or the clock (after :meth:`BacklaneBroker.serve`, which
  ``dramatiq`` worker processes and backlane's periodiq scheduler call) waits for
  RabbitMQ however long it is away, with capped backoff, saying so once per
  outage; a command gives up after ``broker.reconnect_timeout``. A clock tick
  sent after an outage carries the time it was sent, so the worker runs it;
* refusals: a wrong password, vhost or permission is never retried as an
  outage: one line naming ``BACKLANE_BROKER__URL`` (:mod:`backlane.messaging.broker_faults`),
  and a worker or clock exits;
* a delivery whose connection has gone is neither acked nor dead-lettered on
  the connection that replaced it: RabbitMQ delivers it again;
* quorum queues when ``broker.queue_type`` says so, for every queue it declares (work,
  delay, dead-letter); a queue that exists with the other type is one line
  (:class:`~backlane.errors.QueueTypeMismatch`) naming the migration, not a retried 406;
* a cluster: several URLs separated by ';'. Each process starts at a node of its own
  (a random rotation of the list, so connections spread), and a node whose connection
  died goes to the back of the list, so reconnecting tries the others first;
* dead letters that carry their reason (:mod:`backlane.messaging.deadletter`);
* every message it publishes with options is signed (:mod:`backlane.messaging.signing`), so a
  worker can tell backlane's own bookkeeping options from a publisher's forgery.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import pendulum
import pika
import pika.exceptions
from dramatiq.broker import Broker, MessageProxy
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import dq_name, q_name, xq_name
from dramatiq.errors import BrokerConnectionError, ConnectionClosed
from dramatiq.message import Message
from dramatiq.middleware import Middleware, MiddlewareError

from backlane.core.startup import WORKER, process_role, refuse
from backlane.errors import Problem, QueueMismatch
from backlane.messaging import signing
from backlane.messaging.broker_faults import (
    OutageLog,
    QuietConsumerRestarts,
    declare_checked,
    exit_refused,
    quiet_pika,
    refusal_of,
)
from backlane.messaging.broker_faults import (
    _declares as declares,
)
from backlane.messaging.deadletter import DeadLetteringConsumer
from backlane.messaging.masstransit import MassTransitInbox
from backlane.messaging.publishing import NACKED, BatchPublisher, Outgoing, UnroutableMessages
from backlane.problems import broker_refused

logger = logging.getLogger("backlane.broker")

T = TypeVar("T")
#: A publish RabbitMQ nacked (a quorum queue losing its leader mid-publish) is sent again, like one
#: whose confirm never came: a duplicate is harmless, processing is idempotent by row state.
_CONNECTION_ERRORS = (
    BrokerConnectionError,
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.NackError,
)
#: Longest pause between two attempts to reach RabbitMQ, seconds.
MAX_RECONNECT_PAUSE = 5.0
#: Sent by periodiq with each tick; PeriodiqMiddleware skips a tick this much older than "now".
SCHEDULED_AT = "scheduled_at"

#: Queue every discover actor runs on, so a per-item backlog never delays a tick.
DISCOVER_QUEUE = "discover"


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
    ) -> None:
        self._hooks: dict[str, list[Any]] = {}
        self._hooks_of: list[Middleware] = []
        super().__init__(url=url, confirm_delivery=True, middleware=middleware)
        if connect_timeout is not None:  # a command: one attempt must not take pika's 10 s + DNS
            params = self.parameters if isinstance(self.parameters, list) else [self.parameters]
            for param in params:
                param.socket_timeout = param.stack_timeout = connect_timeout
                param.connection_attempts = 1
        if isinstance(self.parameters, list) and len(self.parameters) > 1:
            # Each process starts at a node of its own, so a cluster's connections spread over it.
            start = random.randrange(len(self.parameters))
            self.parameters = self.parameters[start:] + self.parameters[:start]
        self._parameters_lock = threading.Lock()
        self.url = url
        self.queue_type = queue_type
        self.dead_letter_ttl_ms = dead_letter_ttl_ms
        self.reconnect_timeout = reconnect_timeout
        #: What this broker signs its messages' options with (None: from this process's settings).
        self.signing_key = signing_key
        #: Largest delivery a consumer reads; a larger one is dead-lettered as it came, unread.
        self.max_body_bytes = max_body_bytes
        self.outage = OutageLog(url)
        #: True in a worker or clock process: wait for RabbitMQ for ever, exit on a refusal.
        self.serving = False
        self._stopping = threading.Event()
        self._local_publisher = threading.local()
        self._publishers: set[BatchPublisher] = set()
        self._publishers_lock = threading.Lock()
        #: Inbox queues that also take MassTransit publishes, by queue name.
        self.masstransit_inboxes: dict[str, MassTransitInbox] = {}
        self._xq_warned: set[str] = set()
        quiet_pika()
        self.add_middleware(_ServiceLifecycle())

    @property
    def consumer_class(self) -> type[DeadLetteringConsumer]:
        return _OutageAwareConsumer

    # -- middleware signals -------------------------------------------------
    # Dramatiq calls every middleware for every signal, a message's half a dozen signals times
    # each middleware, most of them Middleware's own empty methods. Only the overridden hooks
    # are called here, in Dramatiq's order and with its error handling. The list is rebuilt
    # whenever the middleware list changed (added to, or edited in place as some tests do).
    def _hooks_for(self, name: str, order: Any) -> list[Any]:
        if self.middleware != self._hooks_of:
            self._hooks, self._hooks_of = {}, list(self.middleware)
        default = getattr(Middleware, name, None)
        hooks = [getattr(m, name) for m in order if default is None or getattr(type(m), name, None) is not default]
        self._hooks[name] = hooks
        return hooks

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        name = "before_" + signal
        hooks = self._hooks.get(name) if self.middleware == self._hooks_of else None
        for hook in hooks if hooks is not None else self._hooks_for(name, self.middleware):
            try:
                hook(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", name, hook.__self__, exc_info=True)
        if signal == "enqueue" and args and isinstance(getattr(args[0], "options", None), dict):
            # Every publish path (enqueue with or without delay, enqueue_many) encodes the message
            # right after this: the options are final, and Dramatiq's delay copy is made.
            signing.sign_message(self, args[0])

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        name = "after_" + signal
        hooks = self._hooks.get(name) if self.middleware == self._hooks_of else None
        for hook in hooks if hooks is not None else self._hooks_for(name, reversed(self.middleware)):
            try:
                hook(self, *args, **kwargs)
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", name, hook.__self__, exc_info=True)

    # -- long-running processes --------------------------------------------
    def serve(self) -> None:
        """This process is a worker or the clock: from now on an outage is waited out however
        long it lasts, and a refusal (credentials, vhost, permission) ends the process."""
        if self.serving:
            return
        self.serving = True

    def check_access(self) -> None:
        """Open one connection now, so a refusal shows at start-up rather than at the first publish.

        An unreachable RabbitMQ is not an error here: a serving process waits for it."""
        connection = self._probe_connection()
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def check_queues(self, queue_names: Iterable[str]) -> None:
        """Declare a worker's queues (with their delay and dead-letter queues) once, from the
        process's main thread before its consumer threads start.

        A queue of the other type then stops the worker at boot, in one line with status 78.
        Found later by a consumer thread, the same refusal ends the process before it told the
        dramatiq CLI that it booted, and the CLI waits out its whole ``--worker-fork-timeout``
        before it notices. An unreachable RabbitMQ is skipped here: the consumers wait for it."""
        connection = self._probe_connection()
        if connection is None:
            return
        try:
            channel = connection.channel()
            for name in sorted({q_name(queue) for queue in queue_names}):
                self._declare_queue(name, channel)
                self._declare_dq_queue(name, channel)
                self._declare_xq_queue(name, channel)
        except QueueMismatch as mismatch:
            self._refused(mismatch)
        except (pika.exceptions.AMQPError, OSError) as exc:
            reason = refusal_of(exc)  # e.g. no permission on one of the queues
            if reason is not None:
                self._refused(broker_refused(self.url, reason))
            # else gone while declaring: the consumers declare again once it is back
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    def _probe_connection(self) -> Any:
        """One connection attempt per URL (5 s each): the connection, or None when no node
        answers. A refusal (credentials, vhost, permission) is :meth:`_refused`."""
        for url in (u for u in self.url.split(";") if u):
            params = pika.URLParameters(url)
            params.connection_attempts = 1
            params.socket_timeout = 5
            try:
                return pika.BlockingConnection(params)
            except pika.exceptions.AMQPError as exc:
                reason = refusal_of(exc)
                if reason is not None:
                    self._refused(broker_refused(self.url, reason))
            except OSError:  # e.g. the host name does not resolve (yet)
                pass
        return None

    def demote(self, connection: Any) -> None:
        """The node ``connection`` was on failed: when it is first in the list of URLs, move it to
        the end, so the next connection tries the other nodes first (pika tries them in order,
        and a node cut off by its network costs a whole socket timeout per attempt)."""
        params = getattr(getattr(connection, "_impl", None), "params", None)
        if params is None or not isinstance(self.parameters, list) or len(self.parameters) < 2:
            return
        with self._parameters_lock:
            first = self.parameters[0]
            if (first.host, first.port, first.virtual_host) == (params.host, params.port, params.virtual_host):
                # A new list, not a change in place: another thread may be connecting through the old one.
                self.parameters = self.parameters[1:] + self.parameters[:1]
                logger.info("RabbitMQ node %s:%s failed; trying the others first", params.host, params.port)

    def _refused(self, refused: Problem | QueueMismatch) -> None:
        if self.serving:
            if threading.current_thread() is threading.main_thread() and process_role() == WORKER:
                refuse(str(refused), WORKER)  # a worker's main thread is booting: said once for its siblings
            exit_refused(refused)
        raise refused

    # -- queues -------------------------------------------------------------
    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)
        if self.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
            arguments.pop("x-max-priority", None)  # quorum queues have no priorities: RabbitMQ refuses it
        return arguments

    def accept_masstransit(self, inbox: MassTransitInbox) -> None:
        """``inbox.queue`` also takes MassTransit publishes: its message-type exchange is declared
        and bound with the queue (by ``backlane declare-queues`` and a worker's start)."""
        self.masstransit_inboxes[inbox.queue] = inbox
        if inbox.queue in self.queues:
            self.queues_pending.add(inbox.queue)  # declared already: bind at the next ensure

    # Dramatiq declares on this thread's channel; check_queues passes a channel of its own.
    def _declare_queue(self, queue_name: str, channel: Any = None) -> Any:
        channel = channel or self.channel
        result = declare_checked(channel, queue_name, self._build_queue_arguments(queue_name))
        inbox = self.masstransit_inboxes.get(queue_name)
        if inbox is not None:
            inbox.declare(channel)
        return result

    def _declare_dq_queue(self, queue_name: str, channel: Any = None) -> Any:
        return declare_checked(channel or self.channel, dq_name(queue_name), self._build_queue_arguments(queue_name))

    def _declare_xq_queue(self, queue_name: str, channel: Any = None) -> Any:
        """The dead-letter queue: letters are read (listed, shown on the dashboard) without being
        consumed, which a quorum queue counts as deliveries. Its delivery limit is turned off on
        RabbitMQ 4 (default 20: a letter would be dropped after ~20 views); 3.x has none by
        default, and reads -1 as a limit, dropping at the first read. A quorum .XQ made before
        with another limit is used as it is, with a warning (SCALING.md, RabbitMQ 4)."""
        channel = channel or self.channel
        name = xq_name(queue_name)
        arguments = xq_arguments(self.queue_type, self.dead_letter_ttl_ms, server_major(channel))
        if self.queue_type == "quorum" and not declares(channel, name, arguments):
            other = {k: v for k, v in arguments.items() if k != "x-delivery-limit"}
            if "x-delivery-limit" not in arguments:
                other["x-delivery-limit"] = 20
            if declares(channel, name, other) or declares(
                channel, name, {k: v for k, v in other.items() if k != "x-delivery-limit"}
            ):
                if name not in self._xq_warned:
                    self._xq_warned.add(name)
                    logger.warning(
                        "%s exists with another delivery limit than %s: each read of a letter (list, dashboard) "
                        "counts toward it on RabbitMQ 4, and a letter past it is dropped; see SCALING.md (RabbitMQ 4)",
                        name,
                        arguments.get("x-delivery-limit", "none"),
                    )
                return channel.queue_declare(queue=name, passive=True)
        return declare_checked(channel, name, arguments)

    # -- publishing ---------------------------------------------------------
    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        parent = super().enqueue
        attempts = itertools.count()

        def attempt() -> Message:
            return parent(message if next(attempts) == 0 else _restamped(message), delay=delay)

        return self.with_reconnect(attempt, f"enqueue {message.actor_name}")

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        """A consumer, once RabbitMQ answers: a serving worker waits here through an outage
        instead of failing (and logging) every few seconds per queue."""
        if self.serving:
            thread_logger = logging.getLogger(f"dramatiq.worker.ConsumerThread({queue_name})")
            if not any(isinstance(f, QuietConsumerRestarts) for f in thread_logger.filters):
                thread_logger.addFilter(QuietConsumerRestarts(self.outage))
        parent = super().consume
        return self.with_reconnect(lambda: parent(queue_name, prefetch, timeout), f"consume {queue_name}")

    def enqueue_many(self, messages: Sequence[Message]) -> None:
        """Publish messages (no delay) and wait once for all their confirms."""
        if not messages:
            return
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

        remaining = list(batch)

        def attempt() -> None:
            nonlocal remaining
            refused = self._publisher().publish(remaining)
            if not refused:
                return
            nacked = {mid for mid, why in refused.items() if why == NACKED}
            if nacked:
                # A quorum queue losing its leader mid-publish: send those again (after the reconnect
                # with backoff that with_reconnect gives), not the ones RabbitMQ confirmed.
                remaining = [out for out in remaining if out.message_id in refused]
                raise pika.exceptions.NackError([])
            again = [out for out in remaining if out.message_id in refused]
            if redeclare is not None:
                logger.warning("%d message(s) came back unroutable; declaring their exchange again", len(again))
                redeclare()
            for queue in {q_name(out.routing_key) for out in again} if redeclare is None else ():
                logger.warning("queue %r was missing; declaring it again and resending", queue)
                self.queues_pending.add(queue)
                self.declare_queue(queue, ensure=True)
            remaining = again
            still_refused = self._publisher().publish(again)
            if any(why == NACKED for why in still_refused.values()):
                remaining = [out for out in again if out.message_id in still_refused]
                raise pika.exceptions.NackError([])
            if still_refused:
                raise UnroutableMessages(still_refused)

        self.with_reconnect(attempt, f"publish {len(batch)} message(s)")

    def _publisher(self) -> BatchPublisher:
        publisher: BatchPublisher | None = getattr(self._local_publisher, "publisher", None)
        if publisher is None or not publisher.is_open:
            if publisher is not None:
                self._drop_publisher(publisher)
            publisher = BatchPublisher(self.parameters)
            self._local_publisher.publisher = publisher
            with self._publishers_lock:
                self._publishers.add(publisher)
        return publisher

    def _drop_publisher(self, publisher: BatchPublisher) -> None:
        publisher.close()
        with self._publishers_lock:
            self._publishers.discard(publisher)
        if getattr(self._local_publisher, "publisher", None) is publisher:
            self._local_publisher.publisher = None

    def with_reconnect(self, operation: Callable[[], T], what: str) -> T:
        """Run ``operation``, retrying on connection errors with capped backoff.

        A serving process (worker, clock) retries for as long as RabbitMQ is away, until
        the worker shuts down; anything else gives up after ``reconnect_timeout``. An outage
        is logged once, and once when it ends. A refusal (credentials, vhost, permission)
        is never retried: :func:`~backlane.problems.broker_refused`, or the end of a serving process."""
        deadline = time.monotonic() + self.reconnect_timeout
        pause = 0.2
        for attempt in itertools.count(1):
            try:
                result = operation()
            except QueueMismatch as mismatch:
                self._forget_connection()  # RabbitMQ closed the channel
                self._refused(mismatch)
                raise
            except _CONNECTION_ERRORS as exc:
                reason = refusal_of(exc)
                if reason is not None:
                    self._refused(broker_refused(self.url, reason))
                publisher = getattr(self._local_publisher, "publisher", None)
                if publisher is not None:
                    self.demote(publisher.connection)
                    self._drop_publisher(publisher)
                self.demote(getattr(self.state, "connection", None))
                self._forget_connection()
                if attempt == 1:
                    continue  # a connection that died while idle (pika notices on use): try a fresh one at once
                self.outage.down(exc, what)
                if self._stopping.is_set() or (not self.serving and time.monotonic() + pause > deadline):
                    if not self._stopping.is_set():
                        logger.error("RabbitMQ unreachable for %.0fs; giving up to %s", self.reconnect_timeout, what)
                    raise
                self._stopping.wait(pause)
                pause = min(pause * 2, MAX_RECONNECT_PAUSE)
            else:
                self.outage.up()
                return result
        raise AssertionError("unreachable: itertools.count never ends")

    def _forget_connection(self) -> None:
        """Drop this thread's channel and connection, quietly: they are broken, and closing them
        through Dramatiq's ``del self.connection`` logs a traceback for each."""
        for attribute, registry in (("channel", self.channels), ("connection", self.connections)):
            resource = getattr(self.state, attribute, None)
            if resource is None:
                continue
            delattr(self.state, attribute)
            registry.discard(resource)
            with contextlib.suppress(Exception):
                if resource.is_open:
                    resource.close()

    def close(self) -> None:
        with self._publishers_lock:
            publishers = list(self._publishers)
            self._publishers.clear()
        for publisher in publishers:
            publisher.close()
        super().close()


def server_major(channel: Any) -> int | None:
    """The major version of the RabbitMQ ``channel`` is on (from its connection's handshake), or None."""
    connection = getattr(getattr(channel, "connection", None), "_impl", None)
    properties = getattr(connection, "server_properties", None) or {}
    version = properties.get("version") if isinstance(properties, dict) else None
    if isinstance(version, bytes):
        version = version.decode("ascii", "replace")
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def xq_arguments(queue_type: str, ttl_ms: int, major: int | None) -> dict[str, Any]:
    """A dead-letter queue's arguments: its letters' time to live; for a quorum queue on
    RabbitMQ 4 or later, no delivery limit (``-1``; 3.x takes -1 as a limit and has none by default)."""
    arguments: dict[str, Any] = {"x-message-ttl": ttl_ms}
    if queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
        if major is not None and major >= 4:
            arguments["x-delivery-limit"] = -1
    return arguments


def _restamped(message: Message) -> Message:
    """A clock tick sent again after an outage: stamped with the time it actually leaves, so the
    worker's PeriodiqMiddleware (which skips ticks older than its skip delay) runs it."""
    if SCHEDULED_AT not in message.options:
        return message
    now = str(pendulum.now().replace(microsecond=0))
    return message.copy(options={**message.options, SCHEDULED_AT: now})


class _OutageAwareConsumer(DeadLetteringConsumer):
    """Reports a lost connection as an outage, and leaves alone the deliveries it cannot settle.

    A delivery tag belongs to one channel. After RabbitMQ went away, a message delivered on
    the old connection is delivered again by RabbitMQ; settling its old tag on the consumer
    that replaced it would ack (or dead-letter) whichever *new* delivery has that number."""

    def __next__(self) -> Any:
        try:
            proxy = super().__next__()
        except ConnectionClosed as exc:
            if isinstance(exc.message, pika.exceptions.AMQPConnectionError):
                self.broker.outage.down(exc.message, f"consume {self.queue_name}")
                self.broker.demote(self.connection)
            raise
        if proxy is not None:
            proxy._backlane_consumer = self  # type: ignore[attr-defined]
        return proxy

    def _settleable(self, message: MessageProxy) -> bool:
        if getattr(message, "_backlane_consumer", self) is self and self.connection.is_open:
            return True
        logger.info(
            "message %s was delivered on a connection that has closed; RabbitMQ delivers it again",
            message.message_id,
        )
        return False

    def ack(self, message: MessageProxy) -> None:
        if self._settleable(message):
            super().ack(message)

    def nack(self, message: MessageProxy) -> None:
        if self._settleable(message):
            super().nack(message)


class _ServiceLifecycle(Middleware):
    """Dramatiq's worker process boots: serve (wait out outages) and check access at once;
    the worker shuts down: stop waiting for RabbitMQ, so a SIGTERM during an outage is prompt."""

    def after_process_boot(self, broker: Broker) -> None:
        if isinstance(broker, BacklaneBroker):
            broker.serve()
            broker.check_access()

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        if isinstance(broker, BacklaneBroker) and broker.serving:
            wanted = getattr(worker, "consumer_whitelist", None)  # dramatiq's --queues
            declared = broker.get_declared_queues()
            broker.check_queues(q for q in declared if not wanted or q in wanted or dq_name(q) in wanted)

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        if isinstance(broker, BacklaneBroker) and broker.serving:
            broker._stopping.set()
