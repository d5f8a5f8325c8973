"""Drain: N pending orders end to end, beside the broker's ceiling and the polling design.

    python benchmarks/drain.py [N ...] [--processes=2] [--threads=8] [--databases=postgresql,sqlite]

For each N, in one run on one machine:

* ceiling: a no-op Dramatiq actor (benchmarks/_noop.py, backlane's broker and
  middleware) draining N messages published in one confirmed batch, with the
  same worker processes and threads: what RabbitMQ + Dramatiq alone allow;
* backlane, per database: N pending orders, one discover tick (claims all N,
  publishes N messages with batch confirms) -> RabbitMQ -> per-order actor ->
  order API simulator (POST /orders, GET /orders/{id}) -> database, timed from
  the tick's send until the N-th order is settled in the database;
* polling, per database: the design backlane replaces, one loop taking a batch
  of pending orders and placing them one by one (POST, GET, UPDATE), timed
  until all N are settled.

Nothing that builds backlane's broker (``actors``, ``devtools.sample``, ``scheduler``) is
imported before the private RabbitMQ node's URL is in the environment: importing ``actors``
builds the broker from the environment once per process (this script once sent to the
default port that way, and failed at its first queue).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime

import _harness as h
from sqlalchemy import select, update

from backlane.db.engine import Database
from backlane.settings import ApiSettings

#: Orders the polling loop takes per round, as the order-queue service's batch.
POLL_BATCH = 500
#: Simulator: an order is final at its first GET, so one message settles one order.
SIMULATOR_ARGS = ("--order-settle-polls", "0")
TIMEOUT = 1800.0


def ceiling(infra: h.Infra, n: int, processes: int, threads: int) -> float:
    """No-op messages per second with the same worker settings."""
    import _noop

    stack = infra.stack("ceiling", infra.database("sqlite", "ceiling"))  # the worker checks its database at start
    queues = h.Queues(infra.amqp_url)
    with h.stopping(stack):
        argv = [sys.executable, "-m", "dramatiq", "_noop", "--processes", str(processes), "--threads", str(threads)]
        worker = h.spawn(stack, "noop-worker", argv)
        _noop.broker.declare_queue(_noop.NOOP_QUEUE, ensure=True)
        queues.wait_consumers(_noop.NOOP_QUEUE, processes, worker)
        messages = [_noop.noop.message(i) for i in range(n)]
        started = time.monotonic()
        _noop.broker.enqueue_many(messages)
        # Ready = 0 leaves at most processes x threads x 2 (prefetch) in flight: a few ms of work.
        done = h.wait_for(lambda: queues.state(_noop.NOOP_QUEUE)[0] == 0, timeout=TIMEOUT, interval=0.01)
    queues.close()
    return n / (done - started)


def backlane(infra: h.Infra, kind: str, n: int, processes: int, threads: int) -> tuple[float, dict[str, float]]:
    """Settled orders per second through discover -> RabbitMQ -> actor -> simulator -> database,
    and the CPU milliseconds per order each part of the system used."""
    import scheduler  # noqa: F401  (declares the discover actors)
    from backlane.core.registry import REGISTRY
    from devtools.sample import create_orders

    db_url = infra.database(kind, f"drain_{kind}")
    db = Database(db_url)
    stack = infra.stack(
        f"backlane-{kind}",
        db_url,
        BACKLANE_ORDERS__MAX_ITEMS=str(n),
        BACKLANE_ORDERS__STATUS_POLL_SECONDS="0.1",
    )
    queues = h.Queues(infra.amqp_url)
    with h.stopping(stack):
        h.start_simulator(stack, *SIMULATOR_ARGS)
        simulator = stack.processes[-1]
        create_orders(db, n, datetime.now(UTC))
        worker = stack.start_worker(processes, threads)
        queues.wait_consumers("orders", processes, worker)
        queues.wait_consumers("discover", processes, worker)
        parts = h.process_parts(worker, simulator, infra, kind)
        before = {name: h.cpu_seconds(pid) for name, pid in parts.items()}
        started = time.monotonic()
        REGISTRY.get("orders").discover_actor.send()
        done = h.wait_for(lambda: h.settled(db) >= n, timeout=TIMEOUT, interval=0.1, procs=[worker])
        cpu = {name: (h.cpu_seconds(pid) - before[name]) * 1000 / n for name, pid in parts.items()}
    queues.close()
    db.dispose()
    return n / (done - started), cpu


def polling(infra: h.Infra, kind: str, n: int) -> float:
    """The replaced design: take a batch of pending orders, place and settle them one by one."""
    from actors.orders.client import OrderApiClient
    from actors.orders.models import Order, OrderStatus
    from devtools.sample import create_orders

    db_url = infra.database(kind, f"polling_{kind}")
    db = Database(db_url)
    stack = infra.stack(f"polling-{kind}", db_url)
    with h.stopping(stack):
        sim_url = h.start_simulator(stack, *SIMULATOR_ARGS)
        api = OrderApiClient(ApiSettings(base_url=sim_url))
        create_orders(db, n, datetime.now(UTC))
        started = time.monotonic()
        while True:
            with db.transaction() as session:
                query = select(Order.id, Order.request_id, Order.customer, Order.payload)
                query = query.where(Order.status == OrderStatus.PENDING.value).order_by(Order.created_at)
                batch = session.execute(query.limit(POLL_BATCH)).all()
            if not batch:
                break
            for order_id, request_id, customer, payload in batch:
                placed = api.place(request_id, {"customer": customer, **payload})
                remote = api.status(placed.external_id)
                now = datetime.now(UTC)
                with db.transaction() as session:
                    session.execute(
                        update(Order)
                        .where(Order.id == order_id)
                        .values(
                            external_order_id=placed.external_id, status=remote.status, settled_at=now, updated_at=now
                        )
                    )
        elapsed = time.monotonic() - started
    assert h.settled(db) == n, "the polling loop left orders unsettled"
    db.dispose()
    return n / elapsed


def main() -> None:
    counts = h.sizes([20_000])
    processes = int(h.option("processes", str(h.PROCESSES)))
    threads = int(h.option("threads", str(h.THREADS)))
    kinds = h.option("databases", "postgresql,sqlite").split(",")
    rows = []
    with h.Infra(with_postgres="postgresql" in kinds) as infra:
        os.environ.update(BACKLANE_BROKER__URL=infra.amqp_url, BACKLANE_WORKER__METRICS_PORT="0")
        for n in counts:
            h.log(f"ceiling: {n} no-op messages ...")
            top = ceiling(infra, n, processes, threads)
            h.log(f"  {top:,.0f} msg/s")
            for kind in kinds:
                h.log(f"backlane on {kind}: {n} orders ...")
                ours, cpu = backlane(infra, kind, n, processes, threads)
                h.log(f"  {ours:,.0f} orders/s; CPU ms per order: {cpu}")
                h.log(f"polling on {kind}: {n} orders ...")
                old = polling(infra, kind, n)
                h.log(f"  {old:,.0f} orders/s")
                split = " / ".join(f"{cpu[k]:.2f}" for k in ("worker", "simulator", "database", "rabbitmq"))
                bound = (os.cpu_count() or 1) * 1000 / sum(cpu.values())
                rows.append([kind, n, top, ours, old, f"{ours / top:.2f}", f"{ours / old:.1f}x", split, bound])
    print(
        h.table(
            f"Drain: settled orders/s ({processes} worker processes x {threads} threads;"
            f" {h.machine()}; load {h.load()})",
            [
                "database",
                "orders",
                "ceiling msg/s",
                "backlane orders/s",
                "polling orders/s",
                "of ceiling",
                "vs polling",
                "CPU ms/order: worker / sim / db / broker",
                "CPU-bound orders/s",
            ],
            rows,
            [
                "ceiling: a no-op actor on backlane's broker and middleware, same worker settings, N messages",
                "backlane: one discover tick (max_items = N) -> RabbitMQ -> process_orders -> simulator -> database,"
                " from the tick's send to the N-th settled row",
                f"polling: one loop, batches of {POLL_BATCH} pending orders, POST + GET + UPDATE per order",
                "simulator: --order-settle-polls 0 (final at the first GET), no latency, no failures;"
                " BACKLANE_ORDERS__STATUS_POLL_SECONDS=0.1 (never reached: no order stays pending)",
                "CPU ms/order: CPU time each part of the system used during the backlane drain, per order"
                " (/proc utime + stime of each process tree); CPU-bound orders/s = cores x 1000 / their sum,"
                " the most this machine could do were nothing else running on it",
            ],
        )
    )


if __name__ == "__main__":
    main()
