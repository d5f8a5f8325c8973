"""Backlog memory: the worker's resident memory while 100,000 messages wait in its queue.

    python benchmarks/memory.py [MESSAGES] [--duration=600] [--every=10] [--latency-ms=1000]
                                [--processes=2] [--threads=8] [--database=postgresql] [--outage]

MESSAGES pending orders (default 100,000) are created and one per-order message
each is published to the ``orders`` queue (as earlier ticks or OrderCreated
would have), then a worker starts. The order API answers in ``--latency-ms``,
so the worker works through the backlog slowly and it stays (nearly) whole for
the whole run. The resident memory of every worker process (from
/proc/<pid>/status VmRSS) is sampled every ``--every`` seconds for
``--duration`` seconds; the table shows the first sample, one per minute and
the last, and the notes the growth from the first sample to the last.

With ``--outage`` the order API answers every request 503 (the simulator's
``--outage orders``): every order fails transiently and is retried with backoff,
so the backlog moves to the delay queue ``orders.DQ``, of which each worker
process holds at most ``broker.delay_prefetch`` messages in memory (RabbitMQ
keeps the rest); the table then also shows the messages waiting in ``orders.DQ``.
With ``--delayed`` the messages are published as retries already are: to
``orders.DQ`` with an ``eta`` spread evenly over the next 15 s to 15 minutes (the
retry backoff's range), so the whole backlog is retrying from the first sample on
(with ``--outage``: an API down for the whole run).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime

import _harness as h

from backlane.db.engine import Database
from backlane.messaging.publishing import Outgoing
from devtools.sample import create_orders

MB = 1024 * 1024
#: Messages published per confirmed batch while filling the queue.
PUBLISH_BATCH = 5_000


def main() -> None:
    (count,) = h.sizes([100_000])[:1]
    duration = float(h.option("duration", "600"))
    every = float(h.option("every", "10"))
    latency_ms = h.option("latency-ms", "1000")
    processes = int(h.option("processes", str(h.PROCESSES)))
    threads = int(h.option("threads", str(h.THREADS)))
    kind = h.option("database", "postgresql")
    outage = "--outage" in sys.argv
    delayed = "--delayed" in sys.argv
    samples: list[tuple[float, int, int, int, list[int]]] = []
    with h.Infra(with_postgres=kind == "postgresql") as infra:
        os.environ.update(BACKLANE_BROKER__URL=infra.amqp_url, BACKLANE_WORKER__METRICS_PORT="0")
        import scheduler
        from backlane.core.registry import REGISTRY

        db_url = infra.database(kind, "memory")
        db = Database(db_url)
        stack = infra.stack("memory", db_url)
        queues = h.Queues(infra.amqp_url)
        with h.stopping(stack):
            api = ["--outage", "orders"] if outage else ["--latency-ms", latency_ms]
            h.start_simulator(stack, "--order-settle-polls", "0", *api)
            h.log(f"creating {count:,} orders and publishing one message each ...")
            ids = create_orders(db, count, datetime.now(UTC))
            actor = REGISTRY.get("orders").process_actor
            scheduler.broker.declare_queue("orders", ensure=True)
            now_ms = int(time.time() * 1000)
            for start in range(0, len(ids), PUBLISH_BATCH):
                chunk = [actor.message(i) for i in ids[start : start + PUBLISH_BATCH]]
                if not delayed:
                    scheduler.broker.enqueue_many(chunk)
                    continue
                # As Dramatiq's Retries middleware sends a retry: to the delay queue, with its eta.
                spread = [
                    m.copy(queue_name="orders.DQ", options={"eta": now_ms + 15_000 + (start + k) * 885_000 // count})
                    for k, m in enumerate(chunk)
                ]
                scheduler.broker.publish([Outgoing("orders.DQ", m.encode(), m.message_id) for m in spread])
            h.log(f"  {queues.state('orders')[0]:,} messages ready; starting the worker")
            worker = stack.start_worker(processes, threads)
            queues.wait_consumers("orders", processes, worker)
            assert worker.proc is not None
            began = time.monotonic()
            while True:
                elapsed = time.monotonic() - began
                pids = [p for p in h.process_tree(worker.proc.pid) if p != worker.proc.pid]
                rss = [h.rss_bytes(p) for p in sorted(pids)]
                ready = queues.state("orders")[0]
                waiting = queues.state("orders.DQ")[0] if outage or delayed else 0
                samples.append((elapsed, ready, waiting, h.settled(db), rss))
                h.log(f"  t={elapsed:5.0f}s ready={ready:,} delayed={waiting:,} rss={[round(r / MB) for r in rss]} MB")
                if elapsed >= duration or not worker.alive:
                    break
                time.sleep(max(0.0, began + len(samples) * every - time.monotonic()))
            parent_rss = h.rss_bytes(worker.proc.pid)
        queues.close()
        db.dispose()
    shown = [s for i, s in enumerate(samples) if i == 0 or i == len(samples) - 1 or int(s[0]) % 60 < every]
    rows = [
        [f"{t:.0f}", ready, *([waiting] if outage or delayed else []), settled, *(f"{r / MB:.0f}" for r in rss)]
        for t, ready, waiting, settled, rss in shown
    ]
    width = max(len(s[4]) for s in samples)
    first, last = samples[0][4], samples[-1][4]
    peak = [max(s[4][i] for s in samples if len(s[4]) > i) for i in range(width)]
    growth = ", ".join(f"{(b - a) / MB:+.1f} MB" for a, b in zip(first, last, strict=False))
    print(
        h.table(
            f"Worker memory under a backlog of {count:,} messages ({processes} processes x {threads} threads;"
            f" {h.machine()}; load {h.load()})",
            [
                "t (s)",
                "ready in orders",
                *(["waiting in orders.DQ (RabbitMQ)"] if outage or delayed else []),
                "orders settled",
                *(f"RSS MB, process {i + 1}" for i in range(width)),
            ],
            rows,
            [
                f"sampled every {every:.0f} s for {duration:.0f} s; "
                + (
                    "the order API answers 503 to every request (outage): every order is retried with backoff"
                    if outage
                    else f"order API latency {latency_ms} ms keeps the backlog in place"
                )
                + ("; published to orders.DQ with etas over the next 15 s to 15 min" if delayed else ""),
                "delay queue prefetch per worker process: "
                + (os.environ.get("BACKLANE_BROKER__DELAY_PREFETCH") or "backlane's default (1000)")
                + " (0 = Dramatiq's threads x 1000)",
                f"growth first -> last sample per worker process: {growth}; peak: "
                + ", ".join(f"{p / MB:.0f} MB" for p in peak),
                f"the dramatiq parent process (forks the workers, relays their logs): {parent_rss / MB:.0f} MB",
            ],
        )
    )


if __name__ == "__main__":
    main()
