"""Dashboard page times over a large orders table (PostgreSQL), through a real ``backlane dashboard``.

    python benchmarks/dashboard_pages.py [ROWS ...] [--due=5000] [--failed=10000] [--repeat=9]

For each table size (default 1,000,000 rows) a fresh database is bulk-loaded with
``INSERT ... SELECT generate_series`` (benchmarks/_orders_data.py): ``--due`` pending orders, ``--failed`` failed ones
with a reason, the rest succeeded with an external id; then ``VACUUM ANALYZE``. The
dashboard runs as its own process (what an operator runs) beside a private RabbitMQ node,
and each page is fetched over HTTP ``--repeat`` times after one warm-up; the table gives
the median and the slowest. The overview reads RabbitMQ at most once per
``BACKLANE_DASHBOARD__MANAGEMENT_CACHE_SECONDS`` (5 s), so most of its fetches use the cache,
as many open browsers would.
"""

from __future__ import annotations

import statistics
import time

import _harness as h
import httpx
from _orders_data import load_orders


def pages(rows: int, due: int, failed: int) -> list[tuple[str, str]]:
    middle = due + failed + (rows - due - failed) // 2
    return [
        ("overview (every pipeline's counts, queues, breakers)", "/"),
        ("orders: failed first, then newest", "/pipelines/orders"),
        ("orders: failed only", "/pipelines/orders?state=failed"),
        ("orders: due only", "/pipelines/orders?state=due"),
        ("orders: done, a page in the middle", f"/pipelines/orders?state=done&before={middle}"),
        ("orders: search by request id", f"/pipelines/orders?q=bench-{middle}"),
        ("orders: search by external id", f"/pipelines/orders?q=ext-{middle}"),
    ]


def fetch(url: str, repeat: int) -> tuple[list[float], list[float]]:
    """(seconds each fetch took, seconds the dashboard says it spent: its Server-Timing)."""
    times, server = [], []
    with httpx.Client(timeout=60) as client:
        for i in range(repeat + 1):
            started = time.perf_counter()
            response = client.get(url)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, (url, response.status_code, response.text[:500])
            if i:  # the first fetch warms the connection pool and the caches
                times.append(elapsed)
                server.append(float(response.headers["server-timing"].split("dur=")[1]) / 1000)
    return times, server


def main() -> None:
    sizes = h.sizes([1_000_000])
    due = int(h.option("due", "5000"))
    failed = int(h.option("failed", "10000"))
    repeat = int(h.option("repeat", "9"))
    table = []
    with h.Infra() as infra:
        for size in sizes:
            url = infra.database("postgresql", f"dashboard_{size}")
            h.log(f"loading {size:,} orders ({due:,} due, {failed:,} failed) ...")
            h.log(f"  loaded in {load_orders(url, size, due=due, failed=failed, days=90):.1f} s")
            stack = infra.stack(f"dashboard-{size}", url)
            try:
                _, base = stack.start_dashboard()
                for name, path in pages(size, due, failed):
                    times, server = fetch(base + path, repeat)
                    median = statistics.median(times)
                    table.append([size, name, median * 1000, max(times) * 1000, statistics.median(server) * 1000])
                    h.log(f"  {name}: median {median * 1000:.0f} ms")
            finally:
                stack.stop_all(timeout=10)
    print(
        h.table(
            f"Dashboard page time over the orders table, PostgreSQL ({h.machine()}; load {h.load()})",
            ["orders rows", "page", "ms (median)", "max", "server ms (median)"],
            table,
            [
                f"median of {repeat} HTTP fetches from a running `backlane dashboard` after one warm-up; server ms "
                "is the dashboard's own Server-Timing (query, render), without the HTTP round trip",
                "counts are exact up to BACKLANE_DASHBOARD__EXACT_COUNT_LIMIT (100,000), PostgreSQL's estimate above",
                f"{due:,} orders due, {failed:,} failed with a reason, the rest succeeded",
            ],
        )
    )


if __name__ == "__main__":
    main()
