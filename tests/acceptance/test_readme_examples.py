"""The docs' publishing examples, executed as written: each order they create or announce settles, once.

The commands are read from the code blocks of docs/operating.md (Docker Compose) and
docs/interop.md and run with only the host names, ports and passwords changed for the
test's own RabbitMQ node and PostgreSQL database (``docker compose exec postgres psql -U
backlane`` becomes ``psql URL``): the compose example (insert a row with psql, publish its
id with curl), the Python example, the management HTTP API example, the MassTransit example
through the HTTP API and the MassTransit envelope published from Python with pika. The
amqp-tools example carries the same body as the wire example.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pika
import pytest
from sqlalchemy import select

from actors.orders.models import Order
from devtools.stack import SOURCE_ROOT
from tests import docs
from tests.acceptance.conftest import System
from tests.docs import commands
from tests.waiting import wait_until

OPERATING = "docs/operating.md"
INTEROP = "docs/interop.md"

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def sh(command: str) -> str:
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
    return result.stdout


def psql_url(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://")


def test_the_docs_examples_run_as_written_and_their_orders_settle_once(system: System, database_url: str) -> None:
    if shutil.which("curl") is None or shutil.which("psql") is None:
        pytest.fail("the docs' examples need curl and psql (apt-get install -y curl postgresql-client)")
    management = system.rabbitmq.management_url
    amqp = system.rabbitmq.amqp_url

    # The compose example: the row with psql, its id published with curl through the HTTP API.
    insert, publish = commands(docs.block(OPERATING, "sh", "docker compose exec postgres psql"))
    psql = f"psql -X -qAt '{psql_url(database_url)}'"
    insert = insert.replace("docker compose exec postgres psql -U backlane", psql)
    compose_id = int(sh(insert).strip())
    sh(
        publish.replace('"backlane:$RABBITMQ_PASSWORD"', "guest:guest")
        .replace("http://localhost:15672", management)
        .replace('\\"order_id\\":1}', f'\\"order_id\\":{compose_id}}}')
    )

    # The Python example, for a row of its own.
    python_id = int(sh(insert.replace("'demo-1'", "'demo-python'")).strip())
    code = docs.block(INTEROP, "python", "import json, pika")
    code = code.replace("amqp://guest:guest@localhost:5672/%2F", amqp).replace("order_id=42", f"order_id={python_id}")
    env = {**os.environ, "PYTHONPATH": str(SOURCE_ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

    # The management HTTP API example, for a third row.
    http_id = int(sh(insert.replace("'demo-1'", "'demo-http'")).strip())
    (http_publish,) = commands(docs.block(INTEROP, "sh", "curl -u guest:guest", "amq.default/publish"))
    sh(
        http_publish.replace("http://localhost:15672", management).replace(
            '\\"order_id\\":42}', f'\\"order_id\\":{http_id}}}'
        )
    )

    # The MassTransit example through the HTTP API: backlane creates the row itself.
    (masstransit,) = commands(docs.block(INTEROP, "sh", "SharedContracts%3AOrderCreated/publish"))
    sh(masstransit.replace("http://localhost:15672", management))

    # The MassTransit envelope ("The bytes") published from Python as the page shows, on a real channel.
    envelope = json.loads(docs.block(INTEROP, "json", '"messageType"', '"massTransitVersion"'))
    envelope["message"]["requestId"] = "r-envelope"
    connection = pika.BlockingConnection(pika.URLParameters(amqp))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        snippet = docs.block(INTEROP, "python", "channel.basic_publish(", "SharedContracts:OrderCreated")
        exec(snippet, {"channel": channel, "pika": pika, "body": json.dumps(envelope).encode(), "message_id": "m-1"})
    finally:
        connection.close()

    # amqp-tools is rarely installed: its body is the wire example's, byte for byte meaning.
    (amqp_publish,) = commands(docs.block(INTEROP, "sh", "amqp-publish"))
    wire = json.loads(docs.block(INTEROP, "json", '"actor_name": "order_created"'))
    assert json.loads(re.search(r"-b '([^']*)'", amqp_publish).group(1)) == wire  # type: ignore[union-attr]

    system.stack.start_worker(processes=1, threads=4)
    wait_until(lambda: system.settled() == 5, timeout=90, what="the five orders of the docs settled")
    with system.db.transaction() as session:
        rows = {row.request_id: row for row in session.scalars(select(Order))}
    assert {rid: row.status for rid, row in rows.items()} == {
        "demo-1": "succeeded",
        "demo-python": "succeeded",
        "demo-http": "succeeded",
        "r-42": "succeeded",
        "r-envelope": "succeeded",
    }, {rid: row.failure_reason for rid, row in rows.items()}
    assert {rows["demo-1"].id, rows["demo-python"].id, rows["demo-http"].id} == {compose_id, python_id, http_id}
    assert system.creations() == [1, 1, 1, 1, 1], "each placed at the order API exactly once"
