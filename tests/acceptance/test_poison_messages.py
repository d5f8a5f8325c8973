"""Poison messages on the real broker: none stalls the inbox, none restarts a consumer.

Each hostile body of issue 21 (and a few more) is published to ``orders_inbox`` as a foreign
service would, directly or through MassTransit's ``SharedContracts:OrderCreated`` exchange,
and right behind it a valid OrderCreated for a fresh pending order. A worker process (the
operator's ``dramatiq`` command) on RabbitMQ with PostgreSQL must place every valid order,
once at the order API, within seconds of its publish; keep the same processes; never log
"Restarting consumer"; keep its memory flat; and leave each hostile message in
``orders_inbox.XQ`` with its reason. The table it prints (and, with
BACKLANE_WRITE_RESULTS=1, writes to ``benchmarks/results/poison-messages.md``: a test run leaves
the checkout as it was) is the one in docs/security.md: for each input what
happened and how long the queue was held (seconds until the order behind it was placed; the
baseline row is the same for an order with nothing in front of it, the pipeline's own latency)."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest
from sqlalchemy import select

from actors.orders.models import Order
from contracts.orders import ORDER_CREATED_MESSAGE_TYPE
from tests.acceptance.conftest import System
from tests.waiting import wait_until

INBOX = "orders_inbox"
MT_EXCHANGE = ORDER_CREATED_MESSAGE_TYPE
ENVELOPE_TYPE = "application/vnd.masstransit+json"
JSON_TYPE = "application/json"
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "poison-messages.md"
#: Longest a valid order behind a hostile message may take to be placed, seconds.
HELD_LIMIT = 5.0
#: Growth of the worker processes' memory over the run that still counts as flat, MB.
MEMORY_SLACK_MB = 80


@dataclass(frozen=True)
class Hostile:
    name: str
    body: bytes
    content_type: str | None = None
    via_masstransit: bool = False
    headers: dict[str, Any] | None = None


def envelope(**fields: Any) -> bytes:
    base = {"queue_name": INBOX, "actor_name": "order_created", "args": [{"version": 1, "order_id": 1}]}
    return json.dumps({**base, "kwargs": {}, "options": {}, **fields}).encode()


def mt(**fields: Any) -> bytes:
    base = {"messageType": [f"urn:message:{MT_EXCHANGE}"], "message": {"requestId": str(uuid.uuid4())}}
    return json.dumps({**base, **fields}).encode()


DEEP = b"[" * 100_000
HOSTILE = [
    Hostile("`[` x 100,000 as application/json", DEEP, JSON_TYPE),
    Hostile("`[` x 100,000 as MassTransit envelope", DEEP, ENVELOPE_TYPE, via_masstransit=True),
    Hostile("`[` x 100,000, no content type", DEEP),
    Hostile("Dramatiq envelope, 300-char message_id", envelope(message_id="m" * 300)),
    Hostile("MassTransit envelope, 300-char messageId", mt(messageId="m" * 300), ENVELOPE_TYPE, True),
    Hostile("MassTransit envelope, numeric messageId", mt(messageId=12345), ENVELOPE_TYPE, True),
    Hostile("`null`", b"null"),
    Hostile("`[1]`", b"[1]"),
    Hostile('`{"args":5}`', b'{"args":5}'),
    Hostile("1 MB of non-UTF-8 bytes", b"\xff\xfe" * 500_000),
    Hostile("2 MiB body (over max_body_bytes)", b'{"x":"' + b"A" * (2 * 1024 * 1024) + b'"}'),
    Hostile("`{` nested 100,000 deep, raw JSON on the MassTransit exchange", b'{"a":' * 100_000, JSON_TYPE, True),
    Hostile("a 5,000-digit number", b"9" * 5000),
    Hostile("message_timestamp 10^30", envelope(message_timestamp=10**30)),
    Hostile("message_id with a lone surrogate", envelope(message_id="\ud800")),
    Hostile("args an object", envelope(args={"version": 1})),
    Hostile("unknown envelope field (pipe_target)", envelope(pipe_target={"actor_name": "x"})),
    Hostile("content type text/xml", b"<OrderCreated/>", "text/xml"),
    Hostile(
        "raw JSON, 5,000-char MT-MessageType header",
        json.dumps({"requestId": str(uuid.uuid4())}).encode(),
        JSON_TYPE,
        True,
        {"MT-MessageType": "urn:message:" + "x" * 5000},
    ),
    Hostile("an actor of another queue (process_orders)", envelope(actor_name="process_orders", args=[1])),
]


def publish(channel: Any, body: bytes, *, message_id: str, content_type: str | None = None, **kw: Any) -> None:
    properties = pika.BasicProperties(
        delivery_mode=2, message_id=message_id, content_type=content_type, headers=kw.get("headers") or {}
    )
    exchange, key = (MT_EXCHANGE, "") if kw.get("via_masstransit") else ("", INBOX)
    channel.basic_publish(exchange, key, body, properties, mandatory=True)


def placed(system: System, order_id: int) -> bool:
    with system.db.transaction() as session:
        return session.scalar(select(Order.status).where(Order.id == order_id)) == "succeeded"


def processes_of(root_pid: int) -> dict[int, int]:
    """Every process under ``root_pid`` (the dramatiq command and its worker processes): pid → RSS kB."""
    found: dict[int, int] = {}
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            children = " ".join(
                p.read_text() for p in Path(f"/proc/{pid}/task").glob("*/children") if p.exists()
            ).split()
        except OSError:
            continue
        rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        found[pid] = rss
        todo.extend(int(c) for c in children)
    return found


def dead_letters(system: System) -> dict[str, str]:
    """orders_inbox.XQ's letters: the message id each was published with → its reason."""
    response = httpx.post(
        f"{system.rabbitmq.management_url}/api/queues/%2F/{INBOX}.XQ/get",
        auth=("guest", "guest"),
        json={"count": 500, "ackmode": "ack_requeue_true", "encoding": "base64", "truncate": 64},
        timeout=30,
    )
    letters = {}
    for letter in response.json():
        props = letter["properties"]
        reason = (props.get("headers") or {}).get("x-backlane-reason", "")
        letters[str(props.get("message_id"))] = reason if isinstance(reason, str) else base64.b64decode(reason).decode()
    return letters


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_no_hostile_message_stalls_the_inbox_or_restarts_a_consumer(system: System) -> None:
    orders = system.create_orders(len(HOSTILE) + 2)
    baseline_order, orders = orders[-1], orders[:-1]
    worker = system.stack.start_worker(processes=1, threads=4)
    connection = pika.BlockingConnection(pika.URLParameters(system.rabbitmq.amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    try:
        # A first valid order: the worker is up and its consumers run.
        publish(channel, envelope(args=[{"version": 1, "order_id": orders[0]}]), message_id=str(uuid.uuid4()))
        wait_until(lambda: placed(system, orders[0]), timeout=60, what="the first order placed")
        before = processes_of(worker.proc.pid)  # type: ignore[union-attr]
        # What placing an order takes with nothing in front of it (the pipeline's own latency).
        publish(channel, envelope(args=[{"version": 1, "order_id": baseline_order}]), message_id=str(uuid.uuid4()))
        sent = time.monotonic()
        wait_until(lambda: placed(system, baseline_order), timeout=30, interval=0.02, what="the baseline order")
        baseline = time.monotonic() - sent

        rows = []
        for index, (hostile, order_id) in enumerate(zip(HOSTILE, orders[1:], strict=True)):
            publish(
                channel,
                hostile.body,
                message_id=f"hostile-{index}",
                content_type=hostile.content_type,
                headers=hostile.headers,
                via_masstransit=hostile.via_masstransit,
            )
            valid = envelope(args=[{"version": 1, "order_id": order_id}])
            publish(channel, valid, message_id=str(uuid.uuid4()))
            sent = time.monotonic()
            wait_until(lambda o=order_id: placed(system, o), timeout=30, interval=0.02, what=hostile.name)
            rows.append((index, hostile, time.monotonic() - sent))

        after = processes_of(worker.proc.pid)  # type: ignore[union-attr]
        wait_until(lambda: len(dead_letters(system)) >= len(HOSTILE), timeout=20, what="every hostile message in .XQ")
        letters = dead_letters(system)
    finally:
        connection.close()

    table = [
        "| hostile input | what happened | queue held (s) | worker restarts |",
        "|---|---|---|---|",
        f"| (none: a valid order alone, the baseline) | placed | {baseline:.2f} | 0 |",
    ]
    for index, hostile, held in rows:
        reason = letters.get(f"hostile-{index}", "NOT IN .XQ").replace("|", "\\|")
        table.append(f"| {hostile.name} | dead-lettered to orders_inbox.XQ: {reason[:160]} | {held:.2f} | 0 |")
    memory = f"worker RSS (kB) before {sum(before.values()):,}, after {sum(after.values()):,}"
    if os.environ.get("BACKLANE_WRITE_RESULTS") == "1":  # a run by hand refreshes the quoted table
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("\n".join([*table, "", memory, ""]))
    print("\n" + "\n".join(table) + "\n" + memory)

    log = worker.log_path.read_text(errors="replace")
    assert "Restarting consumer" not in log and "Consumer encountered" not in log, log[-3000:]
    assert worker.alive and set(after) == set(before), "the worker processes must be the same ones"
    assert (sum(after.values()) - sum(before.values())) / 1024 < MEMORY_SLACK_MB, memory
    assert system.creations() == [1] * (len(orders) + 1), "every valid order placed exactly once"
    slow = [(hostile.name, round(held, 2)) for _, hostile, held in rows if held > HELD_LIMIT]
    assert not slow, f"the inbox was held too long behind {slow}"
    missing = [hostile.name for index, hostile, _ in rows if f"hostile-{index}" not in letters]
    assert not missing, f"not dead-lettered: {missing}"
