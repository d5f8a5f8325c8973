"""Bulk data for the benchmarks: an orders table loaded in one statement, dead letters in an .XQ.

One home for the loading SQL that discover_cost.py, dashboard_pages.py, bulk_requeue.py and
production_size.py share, so they measure the same rows. Nothing here is imported by backlane.
"""

from __future__ import annotations

import json
import time
import uuid

import _harness as h
import pika
from sqlalchemy import text

from backlane.db.engine import Database

#: Orders 1..rows: the first ``due`` pending, the next ``failed`` failed with a reason, the rest
#: succeeded with an external id. Pending ones are created over the last ``due_hours`` when given
#: (so both the recent and the older claim of discover run), else like the others; the others
#: over the last ``days``, newest first, each settled two minutes after it was created.
ORDERS_SQL = """
INSERT INTO orders (request_id, customer, payload, status, external_order_id, failure_reason,
                    lease_until, created_at, updated_at, settled_at)
SELECT 'bench-' || i,
       'customer-' || (i % 97),
       '{"items": [{"sku": "SKU-1", "quantity": 1}]}'::json,
       CASE WHEN i <= p.due THEN 'pending' WHEN i <= p.due + p.failed THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN i <= p.due + p.failed THEN NULL ELSE 'ext-' || i END,
       CASE WHEN i > p.due AND i <= p.due + p.failed THEN 'POST /orders answered 422: an order needs items' END,
       NULL,
       created,
       created + CASE WHEN i <= p.due THEN interval '0' ELSE interval '2 minutes' END,
       CASE WHEN i <= p.due THEN NULL ELSE created + interval '2 minutes' END
FROM (SELECT CAST(:rows AS bigint) AS rows, CAST(:due AS bigint) AS due, CAST(:failed AS bigint) AS failed,
             CAST(:days AS float8) AS days, CAST(:due_hours AS float8) AS due_hours) AS p,
     generate_series(1, p.rows) AS i,
     LATERAL (SELECT CASE WHEN i <= p.due AND p.due_hours IS NOT NULL
                          THEN now() - (i * p.due_hours / p.due) * interval '1 hour'
                          ELSE now() - (i * p.days / p.rows) * interval '1 day' END AS created) AS c
"""


#: The orders table's unique constraints and full indexes (not its primary key, not a partial
#: index: one made again from its text may word its predicate differently), to be built again.
INDEXES_SQL = """
SELECT 'ALTER TABLE orders DROP CONSTRAINT ' || quote_ident(conname),
       'ALTER TABLE orders ADD CONSTRAINT ' || quote_ident(conname) || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'u'
UNION ALL
SELECT 'DROP INDEX ' || quote_ident(indexname), indexdef
FROM pg_indexes i
JOIN pg_index x ON x.indexrelid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass
WHERE i.tablename = 'orders' AND i.schemaname = current_schema() AND x.indpred IS NULL
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = 'orders'::regclass AND c.conname = i.indexname)
"""


def load_orders(
    url: str, rows: int, *, due: int, failed: int = 0, days: float = 90, due_hours: float | None = None
) -> float:
    """Fill the (empty, migrated) orders table as :data:`ORDERS_SQL` says, then ``VACUUM ANALYZE``
    it (PostgreSQL): the seconds it all took. The full secondary indexes are dropped first and
    built again after the insert (minutes less at ten million rows: no random inserts into two text
    indexes larger than the buffer cache); the table ends with exactly the indexes it had."""
    db = Database(url)
    started = time.monotonic()
    params = {"rows": rows, "due": due, "failed": failed, "days": days, "due_hours": due_hours}
    with db.transaction() as session:
        session.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
        indexes = session.execute(text(INDEXES_SQL)).all()
        for drop, _create in indexes:
            session.execute(text(drop))
        session.execute(text(ORDERS_SQL), params)
        for _drop, create in indexes:
            session.execute(text(create))
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE orders"))
    db.dispose()
    return time.monotonic() - started


def fill_dead_letters(amqp_url: str, queue: str, actor: str, count: int, *, first_id: int = 1) -> list[str]:
    """``count`` annotated dead letters in ``queue``.XQ, as backlane.messaging.deadletter writes
    them, each with its own message id (returned) and an ``order_id`` from ``first_id`` on."""
    xq = f"{queue}.XQ"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    ids = []
    for n in range(count):
        message_id = uuid.uuid4().hex
        envelope = {
            "queue_name": queue,
            "actor_name": actor,
            "args": [{"version": 1, "order_id": first_id + n}],
            "kwargs": {},
            "options": {"dead_letter": {"queue": queue, "kind": "unknown_item", "reason": "order does not exist"}},
            "message_id": message_id,
            "message_timestamp": int(time.time() * 1000),
        }
        props = pika.BasicProperties(delivery_mode=2, message_id=message_id)
        channel.basic_publish("", xq, json.dumps(envelope).encode(), props)
        ids.append(message_id)
    queues = h.Queues(amqp_url)
    h.wait_for(lambda: queues.state(xq)[0] >= count, timeout=300)
    queues.close()
    connection.close()
    return ids


def drain_message_ids(amqp_url: str, queue: str) -> list[str]:
    """Consume everything ``queue`` holds (until it is quiet for 2 s): the message id of each,
    in the order they came, so a benchmark can check each requeued letter arrived exactly once."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=2000)
    ids = []
    for method, _props, body in channel.consume(queue, auto_ack=True, inactivity_timeout=2):
        if method is None:
            break
        ids.append(json.loads(body)["message_id"])
    channel.cancel()
    connection.close()
    return ids
