"""RabbitMQ blocking publishers (a memory or disk alarm) on the session's private node: a known
state for commands, health and the clock, never a silent hang.

Alarms are raised with ``rabbitmqctl set_vm_memory_high_watermark 0.00001`` and
``set_disk_free_limit`` (more than the disk has), and always restored.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pendulum
import pika
import pytest
from dramatiq.message import Message

from backlane.errors import Problem
from backlane.messaging import broker as broker_module
from backlane.messaging.broker import BacklaneBroker
from backlane.operations.health import BrokerProbe, check_broker
from tests.waiting import wait_until

ALARMS = {
    "memory": (("set_vm_memory_high_watermark", "0.00001"), ("set_vm_memory_high_watermark", "0.4")),
    "disk": (("set_disk_free_limit", "100000GB"), ("set_disk_free_limit", "50MB")),
}
REASONS = {"memory": "low on memory", "disk": "low on disk"}


def _private(rabbitmq: Any) -> None:
    if not getattr(rabbitmq, "restartable", False):
        pytest.fail("this test raises RabbitMQ alarms: run it against the private node the tests start")


@contextlib.contextmanager
def alarm(rabbitmq: Any, kind: str) -> Iterator[None]:
    """RabbitMQ's ``kind`` alarm on for the block, restored after it whatever happens."""
    on, off = ALARMS[kind]
    rabbitmq.ctl(*on)
    try:
        wait_until(lambda: _alarms(rabbitmq), timeout=30, what=f"the {kind} alarm")
        yield
    finally:
        rabbitmq.ctl(*off)
        wait_until(lambda: not _alarms(rabbitmq), timeout=30, what=f"the {kind} alarm cleared")


def _alarms(rabbitmq: Any) -> bool:
    """Whether the node has an alarm on, asked its management API (not the code under test)."""
    url = f"{rabbitmq.management_url}/api/health/checks/alarms"
    return httpx.get(url, auth=("guest", "guest"), timeout=10).status_code != 200


def _tick(queue: str, at: Any) -> Message:
    return Message(queue_name=queue, actor_name="tick", args=(), kwargs={}, options={"scheduled_at": str(at)})


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_a_command_that_publishes_says_in_one_line_that_rabbitmq_blocks_publishers_and_why(
    rabbitmq: Any, amqp_url: str, kind: str
) -> None:
    _private(rabbitmq)
    broker = BacklaneBroker(url=amqp_url, middleware=[], reconnect_timeout=3, connect_timeout=1.5)
    try:
        broker.declare_queue("blocked_probe_cmd", ensure=True)
        with alarm(rabbitmq, kind):
            started = time.monotonic()
            with pytest.raises(Problem) as raised:
                broker.enqueue(Message(queue_name="blocked_probe_cmd", actor_name="a", args=(), kwargs={}, options={}))
            took = time.monotonic() - started
        line = raised.value.line
        assert took < 3, f"a command must answer within its timeout, took {took:.1f}s"
        assert "blocking publishers" in line and REASONS[kind] in line and f"{kind} alarm" in line, line
        assert "\n" not in line and "guest:guest" not in line
    finally:
        broker.flush("blocked_probe_cmd")
        broker.close()


def test_health_and_status_say_blocked_not_healthy(rabbitmq: Any, amqp_url: str) -> None:
    _private(rabbitmq)
    probe = BrokerProbe(amqp_url, timeout=2.0)
    try:
        assert probe.check()["health"] == "healthy"
        with alarm(rabbitmq, "memory"):
            for check in (probe.check, lambda: check_broker(amqp_url, 2.0)):
                started = time.monotonic()
                state = check()
                assert time.monotonic() - started < 3
                assert state["health"] == "unhealthy" and state["state"] == "blocked", state
                assert "blocking publishers" in state["error"] and "memory alarm" in state["error"]
        assert probe.check()["health"] == "healthy", "healthy again once the alarm clears"
        assert check_broker(amqp_url, 2.0)["state"] == "ok"
    finally:
        probe.close()


def test_the_clock_sends_again_a_tick_rabbitmq_held_so_the_worker_does_not_skip_it(
    rabbitmq: Any, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock's publish waits out the block on its connection; the tick RabbitMQ finally takes
    is stamped with the time it was built, older than the worker's skip delay: so the clock sends
    it again stamped with the time it leaves."""
    _private(rabbitmq)
    monkeypatch.setattr(broker_module, "TICK_RESEND_AFTER", 1.0, raising=False)
    broker = BacklaneBroker(url=amqp_url, middleware=[], reconnect_timeout=1)
    broker.serve()
    queue = "blocked_tick_probe"
    done: list[Message] = []
    try:
        broker.declare_queue(queue, ensure=True)
        broker.flush(queue)
        broker.enqueue(_tick(queue, pendulum.now()))  # the clock's connection is open before the alarm
        broker.flush(queue)
        built_at = pendulum.now().replace(microsecond=0)
        with alarm(rabbitmq, "memory"):
            sender = threading.Thread(target=lambda: done.append(broker.enqueue(_tick(queue, built_at))), daemon=True)
            sender.start()
            # Held past TICK_RESEND_AFTER: a sender that returns sooner fails the assertion at once.
            sender.join(broker_module.TICK_RESEND_AFTER + 0.5)
            assert sender.is_alive(), "a serving broker waits the block out"
        sender.join(30)
        assert done, "the tick was sent once RabbitMQ unblocked"
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        stamps = []
        try:
            channel = connection.channel()
            while True:
                method, _properties, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    break
                stamps.append(pendulum.parse(json.loads(body)["options"]["scheduled_at"]))
        finally:
            connection.close()
        assert len(stamps) == 2, stamps
        assert max(stamps) >= built_at.add(seconds=broker_module.TICK_RESEND_AFTER), (
            f"one copy stamped when it left, not {stamps}"
        )
    finally:
        broker.flush(queue)
        broker.close()
