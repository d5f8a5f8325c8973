"""The broker's connections to RabbitMQ's nodes: which node to try first, and letting go of broken ones.

Dramatiq's RabbitmqBroker connects through ``broker.parameters`` (pika tries a list in order) and keeps
one connection and one channel per thread (``broker.state``, every one also in ``broker.connections`` /
``broker.channels``). :class:`Links` is what backlane does with those:

* a command gets one short attempt per node (``connect_timeout``), not pika's 10 s and DNS;
* each process starts at a node of its own (a random rotation, so a cluster's connections spread), and
  a node whose connection failed goes to the back of the list (:meth:`Links.demote`);
* a broken channel and connection are dropped quietly (:meth:`Links.forget`);
* :func:`probe` opens one connection now, telling a refusal from an unreachable node.

What pika knows of a connection but does not expose (which node it is on, the server's version) is
read from its async ``_impl`` here only: :func:`node_of`, :func:`server_major`
(pinned by tests/unit/test_pinned_internals.py).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from backlane.errors import Problem
from backlane.messaging.broker_faults import refusal_of
from backlane.problems import broker_refused

logger = logging.getLogger("backlane.broker")

#: A probing connection's socket timeout, seconds.
PROBE_TIMEOUT = 5


class Links:
    """The node list and the per-thread connection of one broker."""

    def __init__(self, broker: RabbitmqBroker, connect_timeout: float | None, heartbeat: int | None = None) -> None:
        self.broker = broker
        self._lock = threading.Lock()
        ask_heartbeat(self._parameters(), heartbeat)
        if connect_timeout is not None:  # a command: one attempt must not take pika's 10 s + DNS
            for param in self._parameters():
                param.socket_timeout = param.stack_timeout = connect_timeout
                param.connection_attempts = 1
                # A publish RabbitMQ blocks (a memory or disk alarm) gives up too, not waits for the unblock.
                param.blocked_connection_timeout = max(0.2, connect_timeout / 3)  # dramatiq tries a publish 6 times
        if isinstance(broker.parameters, list) and len(broker.parameters) > 1:
            # Each process starts at a node of its own, so a cluster's connections spread over it.
            start = random.randrange(len(broker.parameters))
            broker.parameters = broker.parameters[start:] + broker.parameters[:start]

    def _parameters(self) -> list[Any]:
        parameters = self.broker.parameters
        return parameters if isinstance(parameters, list) else [parameters]

    def demote(self, connection: Any) -> None:
        """The node ``connection`` was on failed: when it is first in the list of URLs, move it to
        the end, so the next connection tries the other nodes first (pika tries them in order,
        and a node cut off by its network costs a whole socket timeout per attempt)."""
        params = node_of(connection)
        parameters = self.broker.parameters
        if params is None or not isinstance(parameters, list) or len(parameters) < 2:
            return
        with self._lock:
            parameters = self.broker.parameters
            first = parameters[0]
            if (first.host, first.port, first.virtual_host) == (params.host, params.port, params.virtual_host):
                # A new list, not a change in place: another thread may be connecting through the old one.
                self.broker.parameters = parameters[1:] + parameters[:1]
                logger.info("RabbitMQ node %s:%s failed; trying the others first", params.host, params.port)

    def demote_current(self) -> None:
        """:meth:`demote` the node of this thread's connection, if it has one."""
        self.demote(getattr(self.broker.state, "connection", None))

    def forget(self) -> None:
        """Drop this thread's channel and connection, quietly: they are broken, and closing them
        through Dramatiq's ``del self.connection`` logs a traceback for each."""
        broker = self.broker
        for attribute, registry in (("channel", broker.channels), ("connection", broker.connections)):
            resource = getattr(broker.state, attribute, None)
            if resource is None:
                continue
            delattr(broker.state, attribute)
            registry.discard(resource)
            with contextlib.suppress(Exception):
                if resource.is_open:
                    resource.close()


def ask_heartbeat(parameters: Iterable[Any], heartbeat: int | None) -> None:
    """Have each of pika's ``parameters`` ask RabbitMQ for a ``heartbeat`` of that many seconds,
    unless its URL named its own (``heartbeat=``: that URL's wins). None: leave them as they are
    (pika then takes RabbitMQ's proposal, 60 s by default)."""
    if heartbeat is None:
        return
    for param in parameters:
        if param.heartbeat is None:
            param.heartbeat = heartbeat


def url_parameters(url: str, heartbeat: int | None = None) -> list[Any]:
    """pika's parameters for each URL of ``url`` (';'-separated), asking for ``heartbeat``
    (:func:`ask_heartbeat`)."""
    parameters = [pika.URLParameters(u.strip()) for u in url.split(";") if u.strip()]
    ask_heartbeat(parameters, heartbeat)
    return parameters


def probe(url: str, refused: Callable[[Problem], NoReturn], heartbeat: int | None = None) -> Any:
    """One connection attempt per URL of ``url`` (';'-separated, :data:`PROBE_TIMEOUT` each): the
    connection, or None when no node answers. A refusal (credentials, vhost, permission) is ``refused``."""
    for params in url_parameters(url, heartbeat):
        params.connection_attempts = 1
        params.socket_timeout = PROBE_TIMEOUT
        try:
            return pika.BlockingConnection(params)
        except pika.exceptions.AMQPError as exc:
            reason = refusal_of(exc)
            if reason is not None:
                refused(broker_refused(url, reason))
        except OSError:  # e.g. the host name does not resolve (yet)
            pass
    return None


def node_of(connection: Any) -> Any:
    """The pika connection parameters ``connection`` was opened with (which node it is on), or None."""
    return getattr(getattr(connection, "_impl", None), "params", None)


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
