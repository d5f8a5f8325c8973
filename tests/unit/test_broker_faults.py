"""Outage or refusal: how backlane tells them apart, and what the clock sends after an outage."""

from __future__ import annotations

import logging
import time
from typing import Any

import pendulum
import pika.exceptions
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import ConnectionClosed
from periodiq import cron

from backlane.core.ticks import OutageProofScheduler, _ticked_between
from backlane.errors import EXIT_CONFIG, EXIT_USAGE, Problem, redact_url
from backlane.messaging.broker import BacklaneBroker
from backlane.messaging.broker_faults import refusal_of
from backlane.problems import broker_refused

LOGIN_REFUSED = (
    "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
    "For details see the broker logfile.'"
)


def test_urls_are_shown_without_their_password() -> None:
    assert redact_url("amqp://guest:s3cret@host:5672/%2F") == "amqp://guest:***@host:5672/%2F"
    assert redact_url("amqp://a:x@h1/%2F;amqp://b:y@h2/%2F") == "amqp://a:***@h1/%2F;amqp://b:***@h2/%2F"
    assert redact_url("amqp://host/%2F") == "amqp://host/%2F"


@pytest.mark.parametrize(
    "error",
    [
        pika.exceptions.ProbableAuthenticationError(LOGIN_REFUSED),
        ConnectionClosed(pika.exceptions.ProbableAuthenticationError(LOGIN_REFUSED)),  # as Dramatiq wraps it
        pika.exceptions.ProbableAccessDeniedError("ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost x not found'"),
        pika.exceptions.ProbableAccessDeniedError(
            "ConnectionClosedByBroker: (530) \"NOT_ALLOWED - access to vhost '/' refused for user 'u'\""
        ),
        pika.exceptions.ConnectionClosedByBroker(403, "ACCESS_REFUSED - Login was refused"),
        pika.exceptions.ChannelClosedByBroker(403, "ACCESS_REFUSED - access to queue 'q' refused for user 'u'"),
        pika.exceptions.AuthenticationError("PLAIN"),
    ],
)
def test_a_refusal_is_recognised(error: Exception) -> None:
    assert refusal_of(error)


@pytest.mark.parametrize(
    "error",
    [
        pika.exceptions.AMQPConnectionError("ConnectionRefusedError(111, 'Connection refused')"),
        # The connection lost during the handshake (a node going down): pika calls it "probable", it is an outage.
        pika.exceptions.ProbableAuthenticationError("StreamLostError: ('Transport indicated EOF',)"),
        pika.exceptions.ProbableAccessDeniedError("ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost / is down'"),
        pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED - broker forced connection closure"),
        pika.exceptions.ChannelClosedByBroker(404, "NOT_FOUND - no queue 'q'"),
        ConnectionClosed(pika.exceptions.StreamLostError("Stream connection lost")),
    ],
)
def test_an_outage_is_not_a_refusal(error: Exception) -> None:
    assert refusal_of(error) is None


def test_the_refusal_names_the_setting_and_hides_the_password() -> None:
    refused = broker_refused("amqp://guest:hunter2@h:5672/%2F", "ACCESS_REFUSED - Login was refused")
    line = refused.line
    assert "BACKLANE_BROKER__URL" in line and "amqp://guest:***@h:5672/%2F" in line
    assert "hunter2" not in line and "\n" not in line
    assert refused.status == EXIT_USAGE and str(refused) == line


def _refused() -> Any:
    raise ConnectionClosed(pika.exceptions.ProbableAuthenticationError(LOGIN_REFUSED))


def test_a_refusal_is_not_retried() -> None:
    broker = BacklaneBroker(url="amqp://guest:wrong@127.0.0.1:1/%2F", middleware=[], reconnect_timeout=60)
    started = time.monotonic()
    with pytest.raises(Problem, match="RabbitMQ refused access") as raised:
        broker.with_reconnect(_refused, "publish")
    assert raised.value.status == EXIT_USAGE
    assert time.monotonic() - started < 1


def test_a_serving_process_exits_on_a_refusal() -> None:
    broker = BacklaneBroker(url="amqp://guest:wrong@127.0.0.1:1/%2F", middleware=[])
    broker.serve()
    with pytest.raises(SystemExit) as exited:
        broker.with_reconnect(_refused, "publish")
    assert exited.value.code == EXIT_CONFIG


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    broker = BacklaneBroker(url="amqp://guest:pw@127.0.0.1:1/%2F", middleware=[], reconnect_timeout=30)
    failures = iter(range(4))

    def flaky() -> str:
        if next(failures, None) is not None:
            raise ConnectionClosed(pika.exceptions.AMQPConnectionError("Connection refused"))
        return "sent"

    with caplog.at_level(logging.INFO, logger="backlane.broker"):
        assert broker.with_reconnect(flaky, "publish") == "sent"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is unreachable" in m for m in messages) == 1, messages
    assert sum("is reachable again" in m for m in messages) == 1, messages
    assert not any("pw@" in m for m in messages)


class FakeActor:
    def __init__(self, name: str, spec: str) -> None:
        self.actor_name = name
        self.options = {"periodic": cron(spec)}
        self.broker = object()
        self.sent: list[str] = []

    def send_with_options(self, **options: Any) -> None:
        self.sent.append(options["scheduled_at"])

    def __repr__(self) -> str:
        return f"Actor({self.actor_name})"


def test_ticks_missed_while_waiting_are_sent_once_when_the_clock_wakes() -> None:
    every_minute, every_five = FakeActor("a", "* * * * *"), FakeActor("b", "*/5 * * * *")
    scheduler = OutageProofScheduler(actors=[every_minute, every_five])
    start = pendulum.datetime(2030, 1, 1, 12, 0, 0)
    scheduler.now = lambda: start
    scheduler.send_actors([every_minute, every_five], start)
    woke = start.add(minutes=7, seconds=20)  # a send waited out an outage from 12:01 to 12:07:20
    scheduler.now = lambda: woke
    scheduler.send_actors([every_minute], woke)
    assert (len(every_minute.sent), len(every_five.sent)) == (2, 2)  # b's 12:05 tick, once
    scheduler.send_actors([every_minute], woke.add(seconds=1))  # periodiq's "negative delay" wake-up
    assert len(every_minute.sent) == 2, "a tick that left during this minute stands for this minute's tick"


def test_ticked_between_excludes_both_ends() -> None:
    five = cron("*/5 * * * *")
    at = pendulum.datetime(2030, 1, 1, 12, 0, 0)
    assert _ticked_between(five, at, at.add(minutes=6))
    assert not _ticked_between(five, at, at.add(minutes=5))
    assert not _ticked_between(five, at.add(minutes=1), at.add(minutes=4, seconds=59))


def test_a_worker_shutting_down_stops_a_serving_broker_waiting_for_rabbitmq() -> None:
    """The lifecycle middleware a BacklaneBroker adds to itself: a worker's shutdown ends the wait
    for RabbitMQ of a serving process at its next pause, and another broker's shutdown is left alone."""
    broker = BacklaneBroker(url="amqp://guest:pw@127.0.0.1:1/%2F", middleware=[], reconnect_timeout=0.1)
    (lifecycle,) = [m for m in broker.middleware if type(m).__name__ == "ServiceLifecycle"]
    broker.serve()
    lifecycle.before_worker_shutdown(StubBroker(middleware=[]), None)  # type: ignore[arg-type]  # not ours: no effect
    assert not broker.faults.stopping.is_set()
    calls = 0

    def down() -> str:
        nonlocal calls
        calls += 1
        if calls == 4:
            broker.emit_before("worker_shutdown", None)  # as Dramatiq's Worker.stop does
        if calls > 5:
            raise AssertionError("the worker's shutdown did not end the wait for RabbitMQ")
        raise ConnectionClosed(pika.exceptions.AMQPConnectionError("Connection refused"))

    started = time.monotonic()
    with pytest.raises(ConnectionClosed):
        broker.with_reconnect(down, "publish")  # serving: past its reconnect_timeout until the shutdown
    assert calls == 4 and broker.faults.stopping.is_set()
    assert time.monotonic() - started < 3
