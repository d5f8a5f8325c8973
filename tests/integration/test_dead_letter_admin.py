"""`backlane dead-letters` against the real broker: requeue acts on exactly the dead
letters there were when it started (and never loops while a worker dead-letters
them again), `--message-id` on exactly one, `list` is bounded and says so, and
operator mistakes come back as one line.

The command runs as its own process (as an operator runs it) with a timeout, so
a requeue that loops fails the test instead of hanging it; the worker is the
real Dramatiq worker of tests/integration/conftest.py, in this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pika
import pytest

from contracts.orders import ORDER_CREATED_QUEUE, OrderCreated
from devtools.infra.ports import free_port
from tests.integration.conftest import App
from tests.waiting import wait_until

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # no database involved

XQ = f"{ORDER_CREATED_QUEUE}.XQ"


def cli(app: App, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "BACKLANE_BROKER__URL": app.rabbitmq.amqp_url,
        "BACKLANE_BROKER__MANAGEMENT_URL": app.rabbitmq.management_url,
        "BACKLANE_DATABASE__URL": "sqlite://",  # dead-letters never touches the database
        **env,
    }
    try:
        return subprocess.run(
            [sys.executable, "-m", "backlane.cli", "dead-letters", *args],
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"")[-500:] if isinstance(exc.stdout, bytes) else (exc.stdout or "")[-500:]
        pytest.fail(f"`dead-letters {' '.join(args)}` still running after {timeout}s (looping?): {out!r}")


def depth(app: App, queue: str) -> int:
    """Ready messages in a queue, exactly (a passive declare, not the management API's sampled figure)."""
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def publish(app: App, routing_key: str, body: bytes) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", routing_key, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
    finally:
        connection.close()


def dead_letter(message_id: str, item: Any, reason: str = "order 999 does not exist") -> bytes:
    """An annotated dead letter as backlane.messaging.deadletter writes it to <queue>.XQ."""
    envelope = OrderCreated(version=1, order_id=999).envelope(message_id)
    envelope["args"] = [item]
    envelope["options"] = {
        "dead_letter": {
            "queue": ORDER_CREATED_QUEUE,
            "kind": "unknown_item",
            "reason": reason,
            "retries": 0,
            "failed_at": "2024-01-01T00:00:00+00:00",
        }
    }
    return json.dumps(envelope).encode()


def declare(app: App) -> None:
    app.broker.declare_queue(ORDER_CREATED_QUEUE, ensure=True)  # with its .DQ and .XQ


def test_requeue_all_of_messages_that_fail_again_requeues_each_once_and_returns(app: App, worker: Any) -> None:
    declare(app)
    for _ in range(3):  # malformed: dead-lettered again at once, every time they are requeued
        bad = {**OrderCreated(version=1, order_id=1).envelope(uuid.uuid4().hex), "args": [{"version": 1}]}
        publish(app, ORDER_CREATED_QUEUE, json.dumps(bad).encode())
    wait_until(lambda: depth(app, XQ) == 3, timeout=30, what="3 dead letters")

    started = time.monotonic()
    result = cli(app, "requeue", "--all", "--queue", ORDER_CREATED_QUEUE)
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    assert "requeued 3 message(s)" in result.stdout, result.stdout
    assert elapsed < 30, f"requeue took {elapsed:.0f}s"
    # The worker dead-letters them again: the XQ ends with the same 3, not thousands.
    wait_until(lambda: depth(app, XQ) == 3 and depth(app, ORDER_CREATED_QUEUE) == 0, timeout=30, what="3 again")
    time.sleep(1.0)
    assert depth(app, XQ) == 3


def test_requeue_by_message_id_requeues_exactly_one_copy(app: App) -> None:
    declare(app)
    message_id = uuid.uuid4().hex
    publish(app, XQ, dead_letter(uuid.uuid4().hex, {"version": 1, "order_id": 7}))
    publish(app, XQ, dead_letter(message_id, {"version": 1, "order_id": 999}))
    publish(app, XQ, dead_letter(message_id, {"version": 1, "order_id": 999}))  # the same message, twice
    wait_until(lambda: depth(app, XQ) == 3, timeout=10, what="3 dead letters")

    result = cli(app, "requeue", "--message-id", message_id, "--queue", ORDER_CREATED_QUEUE)

    assert result.returncode == 0, result.stderr
    assert "requeued 1 message(s)" in result.stdout, result.stdout
    assert depth(app, ORDER_CREATED_QUEUE) == 1
    assert depth(app, XQ) == 2

    missing = cli(app, "requeue", "--message-id", "no-such-id", "--queue", ORDER_CREATED_QUEUE)
    assert missing.returncode == 1
    assert "not found" in missing.stdout + missing.stderr
    assert depth(app, XQ) == 2 and depth(app, ORDER_CREATED_QUEUE) == 1


def test_list_shows_at_most_limit_says_of_how_many_and_consumes_nothing(app: App) -> None:
    declare(app)
    for n in range(5):
        publish(app, XQ, dead_letter(f"m-{n}", {"version": 1, "order_id": n + 1}))
    huge = "x" * 2_000_000
    publish(app, XQ, dead_letter("m-huge", {"version": 1, "blob": huge}, reason="bad: " + huge))
    wait_until(lambda: depth(app, XQ) == 6, timeout=10, what="6 dead letters")

    shown = cli(app, "list", "--queue", ORDER_CREATED_QUEUE, "--limit", "2")
    assert shown.returncode == 0, shown.stderr
    assert "showing 2 of 6 dead letters in orders_inbox.XQ" in shown.stdout, shown.stdout
    assert len([line for line in shown.stdout.splitlines() if "item=" in line]) == 2

    everything = cli(app, "list", "--queue", ORDER_CREATED_QUEUE)
    assert everything.returncode == 0, everything.stderr
    assert "showing 6 of 6 dead letters in orders_inbox.XQ" in everything.stdout
    assert len(everything.stdout) < 5_000, "a 2 MB dead letter must not be printed whole"
    assert "(2,000,0" in everything.stdout, "a cut field says how long it was"

    as_json = cli(app, "list", "--queue", ORDER_CREATED_QUEUE, "--json", "--limit", "10")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert len(rows) == 6 and len(as_json.stdout) < 10_000
    assert rows[0]["item"] == {"version": 1, "order_id": 1}, "a short item stays a JSON value"
    assert depth(app, XQ) == 6, "listing consumes nothing"


def test_unknown_queue_and_unreachable_broker_are_one_line_errors(app: App) -> None:
    unknown = cli(app, "list", "--queue", "no_such_queue")
    assert unknown.returncode == 2, "a queue this deployment does not have is a usage mistake"
    assert unknown.stderr.count("\n") == 1 and "'no_such_queue'" in unknown.stderr, unknown.stderr
    assert ORDER_CREATED_QUEUE in unknown.stderr, "the line names the queues that exist"
    assert "Traceback" not in unknown.stderr

    requeue_unknown = cli(app, "requeue", "--all", "--queue", "no_such_queue")
    assert requeue_unknown.returncode == 2 and "'no_such_queue'" in requeue_unknown.stderr
    assert requeue_unknown.stderr.count("\n") == 1, requeue_unknown.stderr

    dead_url = f"amqp://ops:Pa55word-marker@127.0.0.1:{free_port()}/%2F"
    for action in (["list"], ["requeue", "--all"], ["purge", "--yes"]):
        started = time.monotonic()
        down = cli(app, *action, BACKLANE_BROKER__URL=dead_url)
        assert time.monotonic() - started < 5
        assert down.returncode == 1, "an unreachable broker is an unavailable dependency"
        assert down.stderr.count("\n") == 1, down.stderr
        assert "BACKLANE_BROKER__URL" in down.stderr and "127.0.0.1" in down.stderr
        assert "Pa55word-marker" not in down.stdout + down.stderr
