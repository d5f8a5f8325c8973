"""The broker's own guarantees, on the real RabbitMQ node."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from backlane.messaging.broker import BacklaneBroker
from backlane.messaging.publishing import Outgoing, UnroutableMessages


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
