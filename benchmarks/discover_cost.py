"""Discover cost: one orders tick claiming and enqueueing 1,000 orders, by table size (PostgreSQL).

    python benchmarks/discover_cost.py [ROWS ...] [--due=5000] [--batch=1000] [--repeat=9]

For each table size (default 100,000 and 1,000,000 rows) a fresh database is
bulk-loaded with ``INSERT ... SELECT generate_series`` (benchmarks/_orders_data.py):
``--due`` pending orders (created over the last 48 hours, so both the recent and the
older claim run) and the rest settled over the last 90 days. Then the real tick,
:func:`backlane.core.discovery.discover`, runs in this process ``--repeat`` times:
claim ``--batch`` orders with a lease (``FOR UPDATE SKIP LOCKED``) and publish
one message each with publisher confirms. Between repetitions the leases are
cleared and the queue purged, so every tick does the same work. One warm-up
tick is not counted. The last column is each size's median over the first's.
"""

from __future__ import annotations

import os
import statistics
import time

import _harness as h
from _orders_data import load_orders
from pydantic import SecretStr
from sqlalchemy import text

from backlane.core.clock import SystemClock
from backlane.settings import Settings


def ticks(url: str, batch: int, repeat: int, queues: h.Queues) -> tuple[list[float], list[float]]:
    """(tick seconds, claim-only seconds) of ``repeat`` ticks, after one warm-up tick."""
    import scheduler
    from backlane.core.discovery import discover
    from backlane.core.registry import REGISTRY
    from backlane.core.runtime import Runtime, install

    settings = Settings()
    settings = settings.model_copy(
        update={
            "database": settings.database.model_copy(update={"url": SecretStr(url)}),
        }
    )
    runtime = install(Runtime(settings=settings, broker=scheduler.broker, clock=SystemClock()))
    registered = REGISTRY.get("orders")
    pipeline = registered.pipeline
    runtime.configs["orders"] = runtime.config(pipeline).model_copy(update={"max_items": batch})
    # Only due orders are ever leased here: clearing them through ix_orders_due, not a scan.
    clear = text(
        "UPDATE orders SET lease_until = NULL WHERE status IN ('pending', 'placed') AND lease_until IS NOT NULL"
    )
    durations: list[float] = []
    claims: list[float] = []
    for i in range(repeat + 1):
        with runtime.database.transaction() as session:
            session.execute(clear)
        queues.purge("orders")
        started = time.perf_counter()
        result = discover(registered)
        elapsed = time.perf_counter() - started
        assert result.enqueued == batch, f"the tick enqueued {result.enqueued}, expected {batch}"
        with runtime.database.transaction() as session:
            session.execute(clear)
        started = time.perf_counter()
        claimed = pipeline.fetch(registered.context(), batch)
        claim_elapsed = time.perf_counter() - started
        assert len(claimed) == batch
        if i:  # the first tick warms the connection pool and the publisher channel
            durations.append(elapsed)
            claims.append(claim_elapsed)
    queues.purge("orders")
    runtime.database.dispose()
    return durations, claims


def main() -> None:
    sizes = h.sizes([100_000, 1_000_000])
    due = int(h.option("due", "5000"))
    batch = int(h.option("batch", "1000"))
    repeat = int(h.option("repeat", "9"))
    rows = []
    with h.Infra() as infra:
        os.environ.update(BACKLANE_BROKER__URL=infra.amqp_url, BACKLANE_WORKER__METRICS_PORT="0")
        import scheduler

        scheduler.broker.declare_queue("orders", ensure=True)
        queues = h.Queues(infra.amqp_url)
        first = None
        for size in sizes:
            url = infra.database("postgresql", f"discover_{size}")
            h.log(f"loading {size:,} rows ({due:,} due) ...")
            seconds = load_orders(url, size, due=due, days=90, due_hours=48)
            h.log(f"  loaded in {seconds:.1f} s; {repeat} ticks of {batch} ...")
            durations, claims = ticks(url, batch, repeat, queues)
            median = statistics.median(durations)
            first = first or median
            rows.append(
                [
                    size,
                    due,
                    batch,
                    median * 1000,
                    min(durations) * 1000,
                    max(durations) * 1000,
                    statistics.median(claims) * 1000,
                    f"{median / first:.2f}x",
                ]
            )
            h.log(f"  median {median * 1000:.1f} ms")
        queues.close()
    print(
        h.table(
            f"Discover tick on PostgreSQL: claim + publish with confirms ({h.machine()}; load {h.load()})",
            ["rows", "due", "batch", "tick ms (median)", "min", "max", "claim only ms", "vs first"],
            rows,
            [
                f"median of {repeat} ticks after one warm-up; leases cleared and queue purged between ticks",
                "tick = backlane.core.discovery.discover(orders): claim_due_orders (2 queries on ix_orders_due,"
                " FOR UPDATE SKIP LOCKED, lease UPDATE) + enqueue_many with one wait for all confirms",
                "claim only = the pipeline's fetch (same claim, no publishing), measured separately",
            ],
        )
    )


if __name__ == "__main__":
    main()
