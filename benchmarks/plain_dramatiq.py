"""The orders work written plainly on Dramatiq: what a user would write without backlane.

``dramatiq plain_dramatiq --processes P --threads T`` (benchmarks/ on PYTHONPATH) runs
one actor per order doing what ``actors/orders.py`` does for an order the API settles
at once: read the row (one SELECT of the columns it needs, skipped when settled),
POST /orders with the request id as idempotency key, GET /orders/{id} while the
answer says pending, then one UPDATE with the final status, the external id and the
time. Dramatiq's own ``RabbitmqBroker`` and default middleware, Dramatiq's retries,
one SQLAlchemy engine and one httpx client per process. No registry, no outcome
line, no metrics, no dead-letter reasons: the baseline backlane's per-message
overhead is judged against. ``plain_noop`` is the no-op actor of
``benchmarks/noop_overhead.py``.

``careful_order`` is the same work written *carefully*, as an engineer who measured it
would: the SELECT and the UPDATE built once at import with bound parameters, each a
single statement in autocommit (one round trip, no BEGIN/COMMIT), on an engine made for
it; the same httpx client. ``plain_order`` is what most users write (each statement in
its own ``connect()``/``begin()`` transaction). Both are baselines in
``benchmarks/compare.py``.

Reads the stack's env: BACKLANE_BROKER__URL, BACKLANE_DATABASE__URL, BACKLANE_ORDER_API__BASE_URL.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime
from typing import Any

import dramatiq
import httpx
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy import Engine, bindparam, create_engine, select, update
from sqlalchemy.engine import make_url

from actors.orders.models import Order

ORDERS_QUEUE = "plain_orders"
NOOP_QUEUE = "plain_noop"
CAREFUL_QUEUE = "careful_orders"

if os.environ.get("PLAIN_HTTPX_LINES") == "off":  # careful-quiet: backlane's default, httpx's lines off
    logging.getLogger("httpx").setLevel(logging.WARNING)

broker = RabbitmqBroker(url=os.environ.get("BACKLANE_BROKER__URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
dramatiq.set_broker(broker)

_lock = threading.Lock()
_engine: Engine | None = None
_autocommit: Engine | None = None
_http: httpx.Client | None = None

#: The careful variant's statements, built once: SQLAlchemy compiles each once per engine.
READ_ORDER = select(Order.request_id, Order.customer, Order.payload, Order.status, Order.external_order_id).where(
    Order.id == bindparam("order_id")
)
SETTLE_ORDER = (
    update(Order)
    .where(Order.id == bindparam("order_id"))
    .values(
        status=bindparam("status"),
        external_order_id=bindparam("external_id"),
        settled_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
)


def resources() -> tuple[Engine, httpx.Client]:
    """One engine and one HTTP client per process, made on first use (after any fork)."""
    global _engine, _http
    with _lock:
        if _engine is None or _http is None:
            url = make_url(os.environ["BACKLANE_DATABASE__URL"])
            if url.drivername == "postgresql":
                url = url.set(drivername="postgresql+psycopg")
            size = int(os.environ.get("PLAIN_POOL_SIZE", "10"))
            _engine = create_engine(url, pool_size=size, max_overflow=size)
            _http = httpx.Client(
                base_url=os.environ["BACKLANE_ORDER_API__BASE_URL"],
                timeout=10.0,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
            )
        return _engine, _http


def careful_resources() -> tuple[Engine, httpx.Client]:
    """The careful variant's engine: autocommit, so each single statement is one round trip."""
    global _autocommit
    engine, http = resources()
    with _lock:
        if _autocommit is None:
            _autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        return _autocommit, http


def place_order(order_id: int) -> None:
    """One order: read, place, follow while pending, record. Shared with plain_celery."""
    engine, http = resources()
    columns = (Order.request_id, Order.customer, Order.payload, Order.status, Order.external_order_id)
    with engine.connect() as connection:
        row = connection.execute(select(*columns).where(Order.id == order_id)).one_or_none()
    if row is None or row.status in ("succeeded", "failed"):
        return
    external_id = row.external_order_id
    if external_id is None:
        response = http.post(
            "/orders", json={"customer": row.customer, **row.payload}, headers={"Idempotency-Key": row.request_id}
        )
        response.raise_for_status()
        remote: dict[str, Any] = response.json()
        external_id = remote["id"]
    else:
        remote = {"status": "pending"}
    if remote["status"] == "pending":
        response = http.get(f"/orders/{external_id}")
        response.raise_for_status()
        remote = response.json()
    if remote["status"] not in ("succeeded", "failed"):
        raise RuntimeError(f"order {external_id} still {remote['status']}")  # Dramatiq / Celery retry it
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(status=remote["status"], external_order_id=external_id, settled_at=now, updated_at=now)
        )


def place_order_carefully(order_id: int) -> None:
    """The same order, each statement prepared once and sent alone in autocommit."""
    engine, http = careful_resources()
    with engine.connect() as connection:
        row = connection.execute(READ_ORDER, {"order_id": order_id}).one_or_none()
    if row is None or row.status in ("succeeded", "failed"):
        return
    external_id = row.external_order_id
    if external_id is None:
        response = http.post(
            "/orders", json={"customer": row.customer, **row.payload}, headers={"Idempotency-Key": row.request_id}
        )
        response.raise_for_status()
        remote: dict[str, Any] = response.json()
        external_id = remote["id"]
    else:
        remote = {"status": "pending"}
    if remote["status"] == "pending":
        response = http.get(f"/orders/{external_id}")
        response.raise_for_status()
        remote = response.json()
    if remote["status"] not in ("succeeded", "failed"):
        raise RuntimeError(f"order {external_id} still {remote['status']}")
    with engine.connect() as connection:
        connection.execute(
            SETTLE_ORDER,
            {"order_id": order_id, "status": remote["status"], "external_id": external_id, "now": datetime.now(UTC)},
        )


@dramatiq.actor(queue_name=ORDERS_QUEUE, max_retries=10)
def plain_order(order_id: int) -> None:
    place_order(order_id)


@dramatiq.actor(queue_name=CAREFUL_QUEUE, max_retries=10)
def careful_order(order_id: int) -> None:
    place_order_carefully(order_id)


@dramatiq.actor(queue_name=NOOP_QUEUE, max_retries=0)
def plain_noop(item: int) -> None:
    """Nothing: the cost measured is Dramatiq's and the broker's alone."""
