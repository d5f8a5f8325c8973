"""`backlane dead-letters` against the real broker: requeue acts on exactly the dead
letters there were when it started (and never loops while a worker dead-letters
them again), `--message-id` on exactly one, `list` is bounded and says so, and
operator mistakes come back as one line.

The command runs as its own process (as an operator runs it) with a timeout, so
a requeue that loops fails the test instead of hanging it; the worker is the
real Dramatiq worker of tests/integration/conftest.py, in this process."""

from __future__ import annotations

import contextlib
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
        # requeue --all and purge run as jobs, kept in the database (the test's, migrated)
        "BACKLANE_DATABASE__URL": app.db.url,
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
        # The broker gets broker.command_timeout (3 s), not the reconnect window; the rest is a
        # Python process starting, which CI's loaded machine has seen take 3 s (6 s in all).
        assert time.monotonic() - started < 10
        assert down.returncode == 1, "an unreachable broker is an unavailable dependency"
        assert down.stderr.count("\n") == 1, down.stderr
        assert "BACKLANE_BROKER__URL" in down.stderr and "127.0.0.1" in down.stderr
        assert "Pa55word-marker" not in down.stdout + down.stderr


# -- byte-exact letters, any letter listable, quorum .XQ (issue 21) ---------------------------

MASSTRANSIT = "application/vnd.masstransit+json"


def publish_with(app: App, routing_key: str, body: bytes, properties: pika.BasicProperties) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", routing_key, body, properties, mandatory=True)
    finally:
        connection.close()


def take(app: App, queue: str) -> tuple[bytes, dict[str, Any]]:
    """The one message waiting in ``queue``, consumed: its body and the properties as set."""
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    try:
        method, props, body = connection.channel().basic_get(queue, auto_ack=True)
        assert method is not None, f"nothing in {queue}"
        return body, {k: v for k, v in vars(props).items() if v is not None}
    finally:
        connection.close()


def test_requeue_of_refused_deliveries_is_byte_exact(app: App, worker: Any) -> None:
    declare(app)
    non_utf8 = bytes(range(256)) * 8 + b"\xff\xfe\xc3"  # no envelope, not even text
    big = (b"\x80\x81" + os.urandom(64)) * 15_152  # ~1 MB, not UTF-8
    envelope = json.dumps(
        {
            "messageId": "0a1b0000-5d8a-0015-c8d5-08dc1f0b7a1e",
            "messageType": ["urn:message:SharedContracts:OrderCancelled"],  # not taken by orders_inbox
            "message": {"requestId": "r-1"},
        }
    ).encode()
    sent = {
        "binary": (non_utf8, pika.BasicProperties(content_type="application/octet-stream", delivery_mode=1)),
        "1 MB": (big, pika.BasicProperties(message_id="big-1", headers={"x-death": "mine", "k": 1})),
        "MassTransit": (
            envelope,
            pika.BasicProperties(
                content_type=MASSTRANSIT,
                content_encoding="utf-8",
                message_id="0a1b0000-5d8a-0015-c8d5-08dc1f0b7a1e",
                correlation_id="corr-7",
                type="OrderCancelled",
                app_id="OrdersApi",
                delivery_mode=2,
                headers={"MT-Host-MachineName": "shop01", "x-backlane-kind": "not ours", "n": [1, {"a": "b"}]},
            ),
        ),
    }
    for body, props in sent.values():
        publish_with(app, ORDER_CREATED_QUEUE, body, props)
    wait_until(lambda: depth(app, XQ) == 3, timeout=30, what="3 dead letters")
    worker.stop(timeout=10_000)  # what requeue puts back stays in the queue, to be compared

    listed = cli(app, "list", "--queue", ORDER_CREATED_QUEUE, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == 3 and all(row["message_id"] for row in rows), "every letter can be named"
    assert all(row["kind"] == "malformed" and row["form"] == "original" for row in rows)
    assert sum(not row["decodable"] for row in rows) == 2, rows
    assert len(listed.stdout) < 10_000

    for name, (body, props) in sent.items():
        letter = (
            next(r for r in rows if name != "binary" and r["message_id"] == props.message_id)
            if name != "binary"
            else next(r for r in rows if r["message_id"] not in ("big-1", sent["MassTransit"][1].message_id))
        )
        result = cli(app, "requeue", "--message-id", letter["message_id"], "--queue", ORDER_CREATED_QUEUE)
        assert result.returncode == 0 and "requeued 1 message(s)" in result.stdout, result.stdout + result.stderr
        got_body, got_props = take(app, ORDER_CREATED_QUEUE)
        assert got_body == body, f"{name}: body changed ({len(got_body):,} bytes, sent {len(body):,})"
        expected = {k: v for k, v in vars(props).items() if v is not None}
        assert got_props == expected, f"{name}: properties changed"
    assert depth(app, XQ) == 0


@pytest.mark.parametrize("raw", [b"null", b"[1]", b'{"args":5}', b"not json {", b"\xff\x00\xfe", b"[" * 100_000])
def test_list_and_purge_show_any_letter(app: App, raw: bytes) -> None:
    declare(app)
    publish(app, XQ, raw)
    # RabbitMQ's own dead-lettering: a message rejected on the work queue lands in .XQ with x-death.
    publish(app, ORDER_CREATED_QUEUE, b'{"not": "dramatiq"}')
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    channel = connection.channel()
    method = wait_until(lambda: channel.basic_get(ORDER_CREATED_QUEUE)[0], timeout=10, what="the message")
    channel.basic_reject(method.delivery_tag, requeue=False)
    connection.close()
    wait_until(lambda: depth(app, XQ) == 2, timeout=10, what="2 letters")

    shown = cli(app, "list", "--queue", ORDER_CREATED_QUEUE)
    assert shown.returncode == 0, shown.stderr
    assert "showing 2 of 2" in shown.stdout and "Error" not in shown.stdout, shown.stdout
    assert "dead-lettered by RabbitMQ: rejected by a consumer" in shown.stdout
    assert len(shown.stdout) < 5_000
    purged = cli(app, "purge", "--queue", ORDER_CREATED_QUEUE, "--yes")
    assert purged.returncode == 0 and "purged 2" in purged.stdout, purged.stdout + purged.stderr


def test_a_quorum_dead_letter_queue_keeps_its_letters_however_often_they_are_read(app: App) -> None:
    from backlane.messaging.broker import BacklaneBroker
    from backlane.operations.dead_letters import list_dead_letters

    queue = f"qq_probe_{uuid.uuid4().hex[:8]}"
    broker = BacklaneBroker(url=app.rabbitmq.amqp_url, queue_type="quorum")
    try:
        broker.declare_queue(queue, ensure=True)
        publish(app, f"{queue}.XQ", b"letter")
        for _ in range(30):  # RabbitMQ 4's default delivery limit is 20; 3.10 drops at -1 on the first
            (listing,) = list_dead_letters(app.rabbitmq.amqp_url, [queue])
            assert listing.total == 1 and listing.letters[0].raw == b"letter"
        # An .XQ made with another delivery limit (RabbitMQ 4's default) is used, not refused.
        other = f"qq_other_{uuid.uuid4().hex[:8]}"
        connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
        connection.channel().queue_declare(
            f"{other}.XQ",
            durable=True,
            arguments={"x-queue-type": "quorum", "x-message-ttl": broker.dead_letter_ttl_ms, "x-delivery-limit": 20},
        )
        connection.close()
        broker.declare_queue(other, ensure=True)
        assert depth(app, f"{other}.XQ") == 0
    finally:
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            with contextlib.suppress(Exception):
                broker.channel.queue_delete(name)
        broker.close()


def test_the_dashboard_page_shows_any_letter(app: App) -> None:
    from tests.integration.test_dashboard_app import dashboard  # that module imports this one

    declare(app)
    for raw in (b"null", b"[1]", b'{"args":5}', b"\xff\x00\xfe"):
        publish(app, XQ, raw)
    publish(app, XQ, dead_letter("m-ok", {"version": 1, "order_id": 5}))
    wait_until(lambda: depth(app, XQ) == 5, timeout=10, what="5 letters")
    with dashboard(app) as client:
        page = client.get("/dead-letters")
    assert page.status_code == 200, page.text[:500]
    assert "showing 5 of 5" in page.text
    assert page.text.count("undecodable: shown as its bytes") == 1, "the binary body is marked"
    assert "not UTF-8" in page.text and "m-ok" in page.text
    assert "NoneType" not in page.text and "AttributeError" not in page.text
    assert depth(app, XQ) == 5, "the page consumes nothing"


def test_a_letter_too_large_for_rabbitmq_is_said_so_and_kept_as_its_head(app: App) -> None:
    from backlane.messaging import letters
    from backlane.messaging.deadletter import TRUNCATED_KEEP, publish_letter
    from backlane.messaging.publishing import BatchPublisher, MessageTooLarge, Outgoing
    from backlane.operations.dead_letters import list_dead_letters

    declare(app)
    limit = 100_000
    app.rabbitmq.ctl("eval", f"application:set_env(rabbit, max_message_size, {limit}).")
    try:
        publisher = BatchPublisher(pika.URLParameters(app.rabbitmq.amqp_url))  # a channel opened under the limit
        started = time.monotonic()
        with pytest.raises(MessageTooLarge, match="larger than configured max size"):
            publisher.publish([Outgoing(XQ, b"x" * (limit + 1), "too-big")])
        assert time.monotonic() - started < 5, "said at once, not after the confirm timeout"
        publisher.close()

        class OnePublisher:
            """The broker's publish, on a channel opened under the limit."""

            def publish(self, batch: list[Outgoing]) -> None:
                fresh = BatchPublisher(pika.URLParameters(app.rabbitmq.amqp_url))
                try:
                    refused = fresh.publish(batch)
                    assert not refused
                finally:
                    fresh.close()

        body, props = letters.encode(
            b"\xff" * (limit + 10), None, letters.Annotation("malformed", "too big", ORDER_CREATED_QUEUE)
        )
        publish_letter(OnePublisher(), ORDER_CREATED_QUEUE, body, props)  # type: ignore[arg-type]
    finally:
        app.rabbitmq.ctl("eval", "application:set_env(rabbit, max_message_size, 134217728).")
    (listing,) = list_dead_letters(app.rabbitmq.amqp_url, [ORDER_CREATED_QUEUE])
    (letter,) = listing.letters
    assert letter.truncated == limit + 10 and len(letter.raw) == TRUNCATED_KEEP
    result = cli(app, "requeue", "--all", "--queue", ORDER_CREATED_QUEUE)
    assert "hold only the head of their body" in result.stdout, result.stdout
    assert depth(app, XQ) == 1 and depth(app, ORDER_CREATED_QUEUE) == 0


@pytest.mark.parametrize("max_prefetch", [3, 65_535])
def test_letters_are_read_in_order_unacked_past_the_prefetch_limit_and_stay(
    app: App, monkeypatch: pytest.MonkeyPatch, max_prefetch: int
) -> None:
    """The reader streams letters with ``basic.consume`` up to AMQP's prefetch limit and takes
    the rest with ``basic.get`` (a limit of 3 stands in for 65,535 here): every letter comes once,
    in queue order, and all are still in .XQ when the command gives them back."""
    from backlane.operations.dead_letters import connection as letters_connection

    monkeypatch.setattr(letters_connection, "MAX_PREFETCH", max_prefetch)
    declare(app)
    for n in range(8):
        publish(app, XQ, dead_letter(f"order-{n}", {"version": 1, "order_id": n + 1}))
    wait_until(lambda: depth(app, XQ) == 8, timeout=10, what="8 dead letters")

    with letters_connection.connect(app.rabbitmq.amqp_url, timeout=5) as amqp:
        channel = amqp.channel()
        first = [letter.message_id for _tag, letter in letters_connection.each_letter(channel, ORDER_CREATED_QUEUE, 5)]
        rest = [letter.message_id for _tag, letter in letters_connection.each_letter(channel, ORDER_CREATED_QUEUE, 8)]
        letters_connection.return_all(channel)
    assert first == [f"order-{n}" for n in range(5)]
    assert rest == [f"order-{n}" for n in range(5, 8)], "the second read ends at the queue's end, not its limit"
    wait_until(lambda: depth(app, XQ) == 8, timeout=10, what="every letter back in .XQ")
    shown = cli(app, "list", "--queue", ORDER_CREATED_QUEUE, "--json")
    assert [row["message_id"] for row in json.loads(shown.stdout)] == [f"order-{n}" for n in range(8)]
