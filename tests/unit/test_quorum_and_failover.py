"""Quorum declarations, the queue-type mismatch line and the node order after a failure, without a
broker (tests/cluster checks the same on a real three-node cluster)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pika.exceptions
import pytest

from backlane.errors import QUEUE_MIGRATION_DOC, QueueMismatch, QueueTypeMismatch
from backlane.messaging.broker import BacklaneBroker
from backlane.messaging.broker_faults import declare_checked

URLS = ";".join(f"amqp://guest:guest@10.0.0.{i}:5672/%2F" for i in (1, 2, 3))


class FakeChannel:
    """A channel whose queue exists with ``existing`` arguments; RabbitMQ names the first differing one."""

    def __init__(self, existing: dict[str, Any]) -> None:
        self.existing = existing
        self.connection = SimpleNamespace(channel=lambda: self)
        self.is_open = True

    def queue_declare(self, queue: str, durable: bool = True, arguments: dict[str, Any] | None = None) -> str:
        arguments = arguments or {}
        for key in sorted(set(arguments) | set(self.existing)):
            if arguments.get(key) != self.existing.get(key):
                text = f"PRECONDITION_FAILED - inequivalent arg '{key}' for queue '{queue}' in vhost '/'"
                raise pika.exceptions.ChannelClosedByBroker(406, text)
        return "ok"

    def close(self) -> None:
        pass


def _broker(queue_type: str) -> BacklaneBroker:
    return BacklaneBroker(url=URLS, queue_type=queue_type, middleware=[])


def test_every_argument_set_backlane_declares_is_quorum_and_has_no_priority() -> None:
    broker = _broker("quorum")
    broker.max_priority = 10
    arguments = broker._build_queue_arguments("orders")
    assert arguments["x-queue-type"] == "quorum" and "x-max-priority" not in arguments
    assert arguments["x-dead-letter-routing-key"] == "orders.XQ"


def test_a_classic_queue_met_with_quorum_settings_is_one_line_naming_the_migration() -> None:
    classic = _broker("classic")._build_queue_arguments("orders")
    quorum = _broker("quorum")._build_queue_arguments("orders")
    with pytest.raises(QueueTypeMismatch) as raised:
        declare_checked(FakeChannel(classic), "orders", quorum)
    line = str(raised.value)
    assert "'orders' exists on RabbitMQ as a classic queue but BACKLANE_BROKER__QUEUE_TYPE is quorum" in line
    assert QUEUE_MIGRATION_DOC in line and "\n" not in line


def test_other_arguments_that_differ_are_named_as_they_are() -> None:
    quorum = _broker("quorum")._build_queue_arguments("orders")
    with pytest.raises(QueueMismatch) as raised:
        declare_checked(FakeChannel({**quorum, "x-max-length": 5}), "orders", quorum)
    assert not isinstance(raised.value, QueueTypeMismatch)
    assert "inequivalent arg 'x-max-length'" in str(raised.value)


def test_a_failed_node_goes_to_the_back_of_the_list() -> None:
    broker = _broker("quorum")
    hosts = [p.host for p in broker.parameters]
    assert sorted(hosts) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    first = broker.parameters[0]
    broker.demote(SimpleNamespace(_impl=SimpleNamespace(params=first)))
    assert [p.host for p in broker.parameters] == hosts[1:] + hosts[:1]
    # A connection to a node that is no longer first (another thread demoted it already) changes nothing.
    broker.demote(SimpleNamespace(_impl=SimpleNamespace(params=first)))
    assert [p.host for p in broker.parameters] == hosts[1:] + hosts[:1]
