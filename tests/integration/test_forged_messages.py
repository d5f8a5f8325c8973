"""A forged message changes no row and publishes nothing but its dead letter, on the real broker.

What issue 21 reproduced: a body on orders_inbox (or sent only to the MassTransit exchange
``SharedContracts:OrderCreated``) naming ``process_orders`` with ``backlane_pending_failure``
marked a pending order failed; ``backlane_requeued`` reopened a failed row; ``pipe_target``
made the worker declare and consume queues of the sender's choosing. Each is sent here, with
every other option a worker reads, and the worker must dead-letter all of them."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pika
from sqlalchemy import select

from actors.orders.models import Order
from backlane.messaging import signing
from backlane.messaging.queues import declare_all
from contracts.orders import ORDER_CREATED_ACTOR, ORDER_CREATED_MESSAGE_TYPE, ORDER_CREATED_QUEUE, OrderCreated
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.integration.test_redelivered_failures import REASON, a_failed_order
from tests.waiting import wait_until

PWNED = "pwned"


def option_value(option: str, order_id: int) -> Any:
    """A value that would do harm if honoured."""
    target = {
        "queue_name": PWNED,
        "actor_name": "process_orders",
        "args": [order_id],
        "kwargs": {},
        "options": {"backlane_pending_failure": {"kind": "permanent", "reason": "forged"}},
        "message_id": "pwned-1",
        "message_timestamp": 0,
    }
    return {
        "backlane_pending_failure": {"kind": "permanent", "reason": "forged"},
        "backlane_requeued": True,
        "pipe_target": target,
        "on_success": "process_orders",
        "on_failure": "process_orders",
        "eta": 4_102_444_800_000,  # the year 2100
        "retries": 10_000,
        "max_retries": 0,
        "time_limit": 1,
        "max_age": 1,
    }.get(option, 1)


def envelope(queue: str, actor: str, argument: Any, options: dict[str, Any]) -> bytes:
    return json.dumps(
        {"queue_name": queue, "actor_name": actor, "args": [argument], "kwargs": {}, "options": options}
    ).encode()


def publish(app: App, bodies: list[tuple[str, str, bytes, str | None]]) -> None:
    """(exchange, routing key, body, content type) each, confirmed."""
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for exchange, routing_key, body, content_type in bodies:
            properties = pika.BasicProperties(delivery_mode=2, content_type=content_type)
            channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
    finally:
        connection.close()


def dead_letters(app: App, queue: str) -> list[dict[str, Any]]:
    """Read (and leave) every letter in ``queue``'s .XQ: its body and backlane's headers."""
    response = httpx.post(
        f"{app.rabbitmq.management_url}/api/queues/%2F/{queue}.XQ/get",
        auth=("guest", "guest"),
        json={"count": 1000, "ackmode": "ack_requeue_true", "encoding": "auto"},
        timeout=10,
    )
    response.raise_for_status()
    return [
        {"body": m["payload"], "headers": (m.get("properties") or {}).get("headers") or {}} for m in response.json()
    ]


def queue_exists(app: App, name: str) -> bool:
    response = httpx.get(f"{app.rabbitmq.management_url}/api/queues/%2F/{name}", auth=("guest", "guest"), timeout=10)
    return response.status_code == 200


def rows(app: App) -> dict[int, tuple[str, str | None]]:
    with app.db.transaction() as session:
        return {o.id: (o.status, o.failure_reason) for o in session.scalars(select(Order))}


def test_forged_actors_and_options_change_no_row_and_publish_nothing(app: App, worker: Any) -> None:
    declare_all(app.broker)  # the MassTransit exchange and its binding, as `backlane declare-queues`
    [pending] = create_orders(app.db, 1, app.clock.now())
    failed = a_failed_order(app)
    before = rows(app)

    inbox: list[tuple[str, str, bytes, str | None]] = []
    routes = [("", ORDER_CREATED_QUEUE, None), (ORDER_CREATED_MESSAGE_TYPE, "", None)]
    routes.append((ORDER_CREATED_MESSAGE_TYPE, "", "application/json"))  # raw JSON that is a Dramatiq envelope
    for exchange, key, content_type in routes:
        for order_id in (pending, failed):
            # The forgery: another queue's actor, with backlane's options.
            for option in ("backlane_pending_failure", "backlane_requeued"):
                body = envelope(ORDER_CREATED_QUEUE, "process_orders", order_id, {option: option_value(option, 0)})
                inbox.append((exchange, key, body, content_type))
        for option in sorted(signing.CONTROLLED_OPTIONS):
            # The inbox's own actor, with each option a worker reads.
            argument = OrderCreated(version=1, order_id=pending).model_dump(mode="json", exclude_none=True)
            body = envelope(ORDER_CREATED_QUEUE, ORDER_CREATED_ACTOR, argument, {option: option_value(option, pending)})
            inbox.append((exchange, key, body, content_type))
    # Straight to the work queue and its delay queue: the right actor, options not signed by backlane.
    work: list[tuple[str, str, bytes, str | None]] = []
    for queue in ("orders", "orders.DQ"):
        for order_id in (pending, failed):
            for option in sorted(signing.CONTROLLED_OPTIONS):
                body = envelope(queue, "process_orders", order_id, {option: option_value(option, order_id)})
                work.append(("", queue, body, None))
    # A badly signed one: a signature copied onto other arguments.
    bogus = {"backlane_requeued": True, "backlane_signature": "0" * 64}
    work.append(("", "orders", envelope("orders", "process_orders", failed, bogus), None))
    publish(app, inbox + work)

    def letters(queue: str) -> list[dict[str, Any]]:
        return dead_letters(app, queue)

    got_inbox = wait_until(
        lambda: (d := letters(ORDER_CREATED_QUEUE)) and len(d) >= len(inbox) and d,
        timeout=60,
        what=f"{len(inbox)} dead letters in orders_inbox.XQ",
    )
    got_work = wait_until(
        lambda: (d := letters("orders")) and len(d) >= len(work) and d,
        timeout=60,
        what=f"{len(work)} dead letters in orders.XQ",
    )
    assert len(got_inbox) == len(inbox) and len(got_work) == len(work)
    reasons = [str(letter["headers"].get("x-backlane-reason")) for letter in got_inbox + got_work]
    assert all(letter["headers"].get("x-backlane-kind") == "malformed" for letter in got_inbox + got_work)
    assert reasons.count("actor 'process_orders' does not belong to queue 'orders_inbox'") == 3 * 2 * 2
    assert "option backlane_pending_failure is set only by backlane; this message is not signed by it" in reasons
    assert "option backlane_requeued is set only by backlane; its signature does not match" in reasons
    assert all(r.startswith("option ") or r.startswith("actor 'process_orders' does not belong") for r in reasons), set(
        reasons
    )
    # Each letter is the forged message as it came (a requeue puts it back unsigned: refused again).
    sent = sorted(body.decode() for _, _, body, _ in inbox + work)
    assert sorted(letter["body"] for letter in got_inbox + got_work) == sent

    # A valid OrderCreated after them all is placed: the worker went on.
    [control] = create_orders(app.db, 1, app.clock.now())
    publish(
        app,
        [("", ORDER_CREATED_QUEUE, json.dumps(OrderCreated(version=1, order_id=control).envelope()).encode(), None)],
    )
    wait_until(lambda: rows(app)[control][0] == "succeeded", timeout=30, what="the control order placed")

    after = rows(app)
    assert after[pending] == before[pending] and after[pending][0] == "pending"
    assert after[failed] == before[failed] == ("failed", REASON)
    with app.db.transaction() as session:
        control_key = session.get(Order, control).request_id  # type: ignore[union-attr]
    placed = {key for key, seen in app.sim_stats()["orders"]["by_key"].items() if seen.get("creations")}
    assert placed == {control_key}, "only the control order reached the order API"
    for queue in ("orders", ORDER_CREATED_QUEUE):
        assert app.queue_counts(queue)[:2] == (0, 0), f"{queue} and its delay queue are empty"
    assert not any(queue_exists(app, name) for name in (PWNED, f"{PWNED}.DQ", f"{PWNED}.XQ"))
    assert len(letters(ORDER_CREATED_QUEUE)) == len(inbox) and len(letters("orders")) == len(work)
