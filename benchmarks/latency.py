"""Latency-bound drain: the order API answers in 50 ms; throughput against the bound.

    python benchmarks/latency.py [N ...] [--latency-ms=50] [--shapes=2x8,2x32] [--database=postgresql]

With every call to the order API taking ``--latency-ms``, a worker of P
processes x T threads can settle at most P x T / (calls per order x latency)
orders per second: each order makes two calls (POST /orders, then GET
/orders/{id}, final at the first GET). N pending orders go through one discover
tick, RabbitMQ, the per-order actor, the simulator and the database, timed from
the tick's send until the N-th order is settled; the table gives the share of
the bound reached for each worker shape.

Nothing that builds backlane's broker (``actors``, ``devtools.sample``, ``scheduler``) is
imported before the private RabbitMQ node's URL is in the environment: importing ``actors``
builds the broker from the environment once per process (this script once sent to the
default port that way, and failed at its first queue).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import _harness as h

from backlane.db.engine import Database

#: POST /orders then GET /orders/{id}.
CALLS_PER_ORDER = 2


def drain(
    infra: h.Infra, kind: str, n: int, processes: int, threads: int, latency_ms: float
) -> tuple[float, float, list[int], float]:
    """(orders/s, worker CPU ms per order, peak RSS of each worker process, worker CPU share of one core)."""
    import scheduler  # noqa: F401  (declares the discover actors)
    from backlane.core.registry import REGISTRY
    from devtools.sample import create_orders

    db_url = infra.database(kind, f"latency_{processes}x{threads}")
    db = Database(db_url)
    stack = infra.stack(
        f"latency-{processes}x{threads}",
        db_url,
        BACKLANE_ORDERS__MAX_ITEMS=str(n),
        BACKLANE_ORDERS__STATUS_POLL_SECONDS="0.1",
        # Each thread holds at most one connection; more threads than the default pool need more.
        BACKLANE_DATABASE__POOL_SIZE=str(max(10, threads)),
    )
    queues = h.Queues(infra.amqp_url)
    with h.stopping(stack):
        h.start_simulator(stack, "--order-settle-polls", "0", "--latency-ms", str(latency_ms))
        create_orders(db, n, datetime.now(UTC))
        worker = stack.start_worker(processes, threads)
        queues.wait_consumers("orders", processes, worker)
        queues.wait_consumers("discover", processes, worker)
        assert worker.proc is not None
        parent = worker.proc.pid
        peak: dict[int, int] = {}

        def settled_all() -> bool:
            for pid in h.process_tree(parent):
                if pid != parent:
                    peak[pid] = max(peak.get(pid, 0), h.rss_bytes(pid))
            return h.settled(db) >= n

        before = h.cpu_seconds(parent)
        started = time.monotonic()
        REGISTRY.get("orders").discover_actor.send()
        done = h.wait_for(settled_all, timeout=3600, interval=0.5, procs=[worker])
        cpu = h.cpu_seconds(parent) - before
    queues.close()
    db.dispose()
    # The dramatiq CLI's children: the worker processes (the metrics endpoint is off here).
    rss = [peak[pid] for pid in sorted(peak)]
    return n / (done - started), cpu * 1000 / n, rss, cpu / (done - started)


def main() -> None:
    counts = h.sizes([3_000])
    latency_ms = float(h.option("latency-ms", "50"))
    shapes = [tuple(int(x) for x in s.split("x")) for s in h.option("shapes", "2x8,2x32").split(",")]
    kind = h.option("database", "postgresql")
    rows = []
    with h.Infra(with_postgres=kind == "postgresql") as infra:
        os.environ.update(BACKLANE_BROKER__URL=infra.amqp_url, BACKLANE_WORKER__METRICS_PORT="0")
        for n in counts:
            for processes, threads in shapes:
                bound = processes * threads / (CALLS_PER_ORDER * latency_ms / 1000)
                h.log(f"{n} orders, {processes}x{threads}, bound {bound:,.0f}/s ...")
                load = h.load()
                rate, cpu, rss, cores = drain(infra, kind, n, processes, threads, latency_ms)
                h.log(f"  {rate:,.0f} orders/s, worker CPU {cpu:.2f} ms/order, RSS {[r >> 20 for r in rss]} MB")
                rows.append(
                    [
                        kind,
                        n,
                        f"{processes}x{threads}",
                        bound,
                        rate,
                        f"{rate / bound:.0%}",
                        f"{cpu:.2f}",
                        f"{cores / processes:.0%}",
                        ", ".join(str(r >> 20) for r in rss),
                        load,
                    ]
                )
    print(
        h.table(
            f"Latency-bound drain: order API answering in {latency_ms:.0f} ms ({h.machine()}; load {h.load()})",
            [
                "database",
                "orders",
                "processes x threads",
                "bound orders/s",
                "backlane orders/s",
                "of bound",
                "worker CPU ms/order",
                "CPU per process (of a core)",
                "peak RSS MB per process",
                "load before",
            ],
            rows,
            [
                f"bound = processes x threads / ({CALLS_PER_ORDER} calls per order x {latency_ms:.0f} ms)",
                "one discover tick (max_items = N) -> RabbitMQ -> process_orders -> simulator -> database,"
                " from the tick's send to the N-th settled row; simulator --order-settle-polls 0",
                "worker CPU: /proc utime + stime of the dramatiq process tree during the drain;"
                " RSS: VmRSS of each worker process, peak of samples every 0.5 s",
            ],
        )
    )


if __name__ == "__main__":
    main()
