"""Drain on the namespaced cluster: the same orders through 1 RabbitMQ node and through 3.

    python benchmarks/cluster_drain.py [N ...] [--threads=8] [--setups=1-classic,1-quorum,3-quorum]

Each setup is a fresh :class:`devtools.cluster.Cluster` (network namespaces on a private
bridge; needs root): the RabbitMQ node(s) on hosts of their own, two worker hosts with one
``dramatiq actors scheduler`` process each (``--threads`` threads), PostgreSQL and the
order API simulator on a database host. The workload is ``drain.py``'s: N pending
orders, one discover tick (claims all N, publishes N messages with batch confirms) ->
RabbitMQ -> ``process_orders`` -> simulator (final at the first GET, no latency) ->
PostgreSQL, timed from the tick until the N-th order is settled. The ratio column is
each setup's rate over the first setup's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import _harness as h

from backlane.db.engine import Database
from backlane.db.migrate import upgrade
from devtools.cluster import Cluster
from devtools.sample import create_orders
from devtools.stack import Placement, Stack

TIMEOUT = 1800.0


def _on(cluster: Cluster, host: str) -> Placement:
    where = cluster.hosts[host]
    return Placement(host=host, address=where.address, prefix=where.prefix())


def drain(nodes: int, queue_type: str, n: int, threads: int) -> tuple[float, float, int]:
    """(settled orders/s, CPU seconds per 1,000 orders of the RabbitMQ nodes, the most PostgreSQL
    connections the two worker processes held at once) on a fresh cluster."""
    with Cluster(rabbit_nodes=nodes) as cluster:
        db_url = cluster.postgres.create_database("drain")
        upgrade(db_url)
        db = Database(db_url)
        stack = Stack(
            cluster.base_dir / "logs",
            {
                "BACKLANE_BROKER__URL": cluster.amqp_urls(),
                "BACKLANE_BROKER__QUEUE_TYPE": queue_type,
                "BACKLANE_BROKER__MANAGEMENT_URL": cluster.nodes[0].management_url,
                "BACKLANE_DATABASE__URL": db_url,
                "BACKLANE_WORKER__METRICS_PORT": "0",
                "BACKLANE_ORDERS__MAX_ITEMS": str(n),
                "BACKLANE_ORDERS__STATUS_POLL_SECONDS": "0.1",
            },
        )
        try:
            _, url = stack.start_simulator(None, "--order-settle-polls", "0", on=_on(cluster, "db"))
            stack.env["BACKLANE_ORDER_API__BASE_URL"] = url
            declared = subprocess.run(
                [sys.executable, "-m", "backlane.cli", "declare-queues"],
                env={**os.environ, **stack.env},
                capture_output=True,
                text=True,
                timeout=120,
            )
            if declared.returncode != 0:
                raise RuntimeError(f"declare-queues: {declared.stderr}")
            create_orders(db, n, datetime.now(UTC))
            workers = [stack.start_worker(1, threads, on=_on(cluster, host)) for host in ("w1", "w2")]
            queues = h.Queues(cluster.nodes[0].amqp_url)
            for queue in ("orders", "discover"):
                queues.wait_consumers(queue, 2, workers[0])
            queues.close()
            rabbit_cpu = sum(h.cpu_seconds(node.pid) for node in cluster.nodes)
            started = time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "backlane.cli", "trigger", "orders"],
                env={**os.environ, **stack.env},
                capture_output=True,
                timeout=120,
                check=True,
            )
            peak = [0]

            def settled_all() -> bool:
                sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = 'drain' AND client_addr <> '%s'"
                peak[0] = max(peak[0], int(cluster.postgres.psql(sql % cluster.gateway).strip() or 0))
                return h.settled(db) >= n

            done = h.wait_for(settled_all, timeout=TIMEOUT, interval=0.5, procs=workers)
            rabbit_cpu = sum(h.cpu_seconds(node.pid) for node in cluster.nodes) - rabbit_cpu
        finally:
            stack.stop_all(timeout=15)
            db.dispose()
    return n / (done - started), rabbit_cpu * 1000 / n, peak[0]


def main() -> None:
    counts = h.sizes([5_000])
    threads = int(h.option("threads", str(h.THREADS)))
    setups = h.option("setups", "1-classic,1-quorum,3-quorum").split(",")
    rows = []
    loads = []
    for n in counts:
        base: float | None = None
        for setup in setups:
            nodes, queue_type = setup.split("-")
            h.log(f"{setup}: {n} orders ...")
            rate, broker_cpu, connections = drain(int(nodes), queue_type, n, threads)
            loads.append(h.load())
            base = base or rate
            h.log(f"  {rate:,.0f} orders/s (load {loads[-1]})")
            rows.append([f"{nodes} node(s), {queue_type}", n, rate, f"{rate / base:.2f}", broker_cpu, connections])
    print(
        h.table(
            f"Cluster drain: settled orders/s (2 worker hosts x 1 process x {threads} threads; {h.machine()};"
            f" load after each setup {', '.join(loads)})",
            [
                "RabbitMQ",
                "orders",
                "orders/s",
                "ratio to the first",
                "broker CPU s per 1,000 orders",
                "peak PostgreSQL connections (2 workers)",
            ],
            rows,
            [
                "each setup on a fresh namespaced cluster (devtools/cluster.py): node(s), w1, w2, db on one bridge",
                "one discover tick (`backlane trigger orders`, max_items = N) -> RabbitMQ -> process_orders ->"
                " simulator (final at the first GET, no latency) -> PostgreSQL; timed to the N-th settled row",
                "broker CPU: /proc utime + stime of every RabbitMQ node's process tree during the drain",
                "peak PostgreSQL connections: pg_stat_activity of the workers (not the harness), sampled every 0.5 s",
            ],
        )
    )


if __name__ == "__main__":
    main()
