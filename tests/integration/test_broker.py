"""The broker's own guarantees, on the real RabbitMQ node."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from backlane.messaging.broker import BacklaneBroker
from backlane.messaging.publishing import Outgoing, UnroutableMessages
from tests.waiting import wait_until


def queue_info(rabbitmq: Any, name: str) -> dict[str, Any]:
    response = httpx.get(f"{rabbitmq.management_url}/api/queues/%2F/{name}", auth=("guest", "guest"), timeout=10)
    response.raise_for_status()
    return response.json()


def test_quorum_queues_when_configured(rabbitmq: Any) -> None:
    broker = BacklaneBroker(url=rabbitmq.amqp_url, queue_type="quorum", middleware=[])
    try:
        broker.declare_queue("quorum_probe", ensure=True)
        assert queue_info(rabbitmq, "quorum_probe")["type"] == "quorum"
        assert queue_info(rabbitmq, "quorum_probe.XQ")["type"] == "quorum"
        assert queue_info(rabbitmq, "quorum_probe")["durable"] is True
    finally:
        broker.close()


def test_a_batch_is_confirmed_and_persistent(rabbitmq: Any) -> None:
    broker = BacklaneBroker(url=rabbitmq.amqp_url, middleware=[])
    try:
        broker.declare_queue("batch_probe", ensure=True)
        broker.flush("batch_probe")
        broker.publish([Outgoing("batch_probe", b"{}", f"m{i}") for i in range(500)])
        assert broker.get_queue_message_counts("batch_probe")[0] == 500
    finally:
        broker.flush("batch_probe")
        broker.close()


def test_a_message_nobody_can_route_is_an_error_not_a_silent_drop(rabbitmq: Any) -> None:
    broker = BacklaneBroker(url=rabbitmq.amqp_url, middleware=[], reconnect_timeout=5)
    try:
        # Not a queue backlane declares, and declaring it again cannot help: must raise.
        broker.declare_queue = lambda *a, **k: None  # type: ignore[method-assign]
        with pytest.raises(UnroutableMessages):
            broker.publish([Outgoing("no_such_queue_anywhere", b"{}", "lost-1")])
    finally:
        broker.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_process_holds_one_tick_at_a_time(app: Any, worker: Any) -> None:
    """A frozen process must not sit on the ticks its siblings would run (issue 27): its discover
    consumer's prefetch is 1 whatever its threads, the work queues keep Dramatiq's 2 x threads."""
    from backlane.messaging.broker import DISCOVER_PREFETCH, DISCOVER_QUEUE

    auth = ("guest", "guest")

    def prefetch_of() -> dict[str, int]:
        consumers = httpx.get(f"{app.rabbitmq.management_url}/api/consumers", auth=auth, timeout=10).json()
        return {c["queue"]["name"]: c["prefetch_count"] for c in consumers}

    wait_until(lambda: DISCOVER_QUEUE in prefetch_of(), timeout=30, what="the discover consumer")
    counts = prefetch_of()
    assert counts[DISCOVER_QUEUE] == DISCOVER_PREFETCH == 1
    assert counts["orders"] == 16, counts


def _heartbeats_by_port(rabbitmq: Any) -> dict[int, int]:
    """The heartbeat RabbitMQ agreed with each of its connections, by the client's port."""
    response = httpx.get(f"{rabbitmq.management_url}/api/connections", auth=("guest", "guest"), timeout=10)
    response.raise_for_status()
    return {c["peer_port"]: c["timeout"] for c in response.json()}


def test_a_delay_queue_consumer_looks_when_what_it_holds_is_due_and_idles_otherwise(rabbitmq: Any) -> None:
    """Dramatiq's consumer thread moves a delayed message on only when its consumer returns. A
    delay queue's consumer returns empty when the earliest message it handed out is due (not
    sooner than ``delay_poll_ms`` after its last look), and, holding nothing, after the worker's
    timeout like a work queue's: an idle consumer thread wakes once a second, not ten times."""
    import time

    import dramatiq

    broker = BacklaneBroker(url=rabbitmq.amqp_url, middleware=[], delay_poll_ms=20)
    consumer = None
    try:
        probe = dramatiq.actor(lambda: None, broker=broker, queue_name="delay_look_probe", actor_name="probe")
        broker.declare_queue("delay_look_probe", ensure=True)  # with its .DQ
        consumer = broker.consume("delay_look_probe.DQ", prefetch=10, timeout=1000)
        next(consumer)  # the first return can come early, as the consumer starts
        started = time.monotonic()
        assert next(consumer) is None, "the delay queue is empty"
        assert time.monotonic() - started > 0.9, "holding nothing, it waits the worker's timeout"

        for delay_ms in (400, 200):  # the later one first: the earliest due decides
            probe.send_with_options(delay=delay_ms)
        got = [next(consumer), next(consumer)]
        assert all(g is not None for g in got), got
        etas = sorted(g.options["eta"] for g in got)
        assert etas[1] - etas[0] > 150, etas
        looks = []
        for _ in range(3):
            assert next(consumer) is None
            looks.append(time.monotonic())
        # Each return is at a message's eta (give or take the machine), then a second later.
        at = [time.time() - (time.monotonic() - look) for look in looks]
        assert abs(at[0] - etas[0] / 1000) < 0.15 and abs(at[1] - etas[1] / 1000) < 0.15, (at, etas)
        assert looks[2] - looks[1] > 0.9, looks
    finally:
        if consumer is not None:
            consumer.close()
        broker.close()


def test_every_connection_asks_for_the_heartbeat_a_url_of_its_own_wins(rabbitmq: Any) -> None:
    """BACKLANE_BROKER__HEARTBEAT_SECONDS reaches the broker's publishing and consuming connections
    (RabbitMQ proposes 60 s, and took it from pika before the setting); a URL's ``heartbeat=`` wins."""
    from backlane.messaging.links import probe

    broker = BacklaneBroker(url=rabbitmq.amqp_url, middleware=[], heartbeat=7)
    separator = "&" if "?" in rabbitmq.amqp_url else "?"
    own = BacklaneBroker(url=f"{rabbitmq.amqp_url}{separator}heartbeat=5", middleware=[], heartbeat=7)
    consumer = None
    probed = None
    try:
        broker.declare_queue("heartbeat_probe", ensure=True)
        publishing = broker.connection
        consumer = broker.consume("heartbeat_probe", prefetch=1, timeout=100)
        probed = probe(broker.url, lambda problem: pytest.fail(str(problem)), broker.heartbeat)
        own_connection = own.connection

        def port(connection: Any) -> int:
            return int(connection._impl._transport._sock.getsockname()[1])

        wanted = {port(publishing): 7, port(consumer.connection): 7, port(probed): 7, port(own_connection): 5}
        wait_until(
            lambda: {p: _heartbeats_by_port(rabbitmq).get(p) for p in wanted} == wanted,
            timeout=10,
            what=f"RabbitMQ's heartbeats {wanted}",
        )
    finally:
        if consumer is not None:
            consumer.close()
        if probed is not None:
            probed.close()
        broker.close()
        own.close()


def test_a_publisher_dropped_for_missed_heartbeats_while_idle_publishes_again_quietly(
    rabbitmq: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A thread's publishing connections run no I/O between publishes (pika's BlockingConnection),
    so RabbitMQ drops them after two or three silent heartbeats: the clock's between its ticks, an
    idle worker thread's. The next enqueue (a tick, a retry) and the next batch open new ones at
    once, send, and log nothing above INFO."""
    from dramatiq.message import Message

    broker = BacklaneBroker(url=rabbitmq.amqp_url, middleware=[], heartbeat=2, reconnect_timeout=5)

    def ours() -> list[int]:  # this broker's connections: the only ones asking for 2 s
        return [port for port, timeout in _heartbeats_by_port(rabbitmq).items() if timeout == 2]

    def message(name: str) -> Message[Any]:
        return Message(queue_name="idle_probe", actor_name="idle", args=(name,), kwargs={}, options={})

    try:
        broker.declare_queue("idle_probe", ensure=True)
        broker.flush("idle_probe")
        broker.enqueue(message("before"))
        broker.publish([Outgoing("idle_probe", b"{}", "before")])
        wait_until(lambda: len(ours()) == 2, timeout=10, what="the enqueueing and the batch connections")
        wait_until(lambda: not ours(), timeout=15, what="RabbitMQ dropping both, idle")
        caplog.clear()
        with caplog.at_level("INFO"):
            broker.enqueue(message("after"))
            broker.publish([Outgoing("idle_probe", b"{}", "after")])
        assert broker.get_queue_message_counts("idle_probe")[0] == 4
        loud = [r for r in caplog.records if r.levelno > 20]
        assert not loud, [r.getMessage() for r in loud]
    finally:
        broker.flush("idle_probe")
        broker.close()
