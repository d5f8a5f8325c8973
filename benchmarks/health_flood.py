"""A flood of /health GETs at a real worker: what it costs RabbitMQ and PostgreSQL.

    python benchmarks/health_flood.py [N ...] [--silent=100]

Starts a private RabbitMQ node and PostgreSQL server, one worker (``dramatiq actors
scheduler``, 1 process x 2 threads) with its /health endpoint, then fires N
concurrent GETs (default 400) and prints, per N: the answers by status, p50/p99
latency, and the broker's AMQP connections (open before / peak / after, sampled from
the management API, and accepted during the flood, counted in the node's log) and the
database's client backends (before / peak / after, pg_stat_activity). Then opens
``--silent`` sockets that send nothing and times a probe while they are open.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import _harness as h
import httpx
import sqlalchemy

from devtools.infra.ports import free_port


def get(port: int) -> tuple[int, float]:
    started = time.monotonic()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/health")
        status = conn.getresponse().status
        conn.close()
    except TimeoutError:
        status = -2  # timed out
    except OSError:
        status = -1  # refused or reset
    return status, time.monotonic() - started


class Sampler:
    """Peaks of broker connections and database backends while a flood runs."""

    def __init__(self, infra: h.Infra, db_url: str) -> None:
        assert infra.rabbitmq is not None
        self.rabbitmq = infra.rabbitmq
        self.engine = sqlalchemy.create_engine(db_url, poolclass=sqlalchemy.NullPool)
        self.peak_amqp = self.peak_pg = 0
        self._stop = threading.Event()

    def amqp_open(self) -> int:
        url = f"{self.rabbitmq.management_url}/api/connections"
        return len(httpx.get(url, auth=("guest", "guest"), timeout=5).json())

    def amqp_accepted(self) -> int:
        logs = [p for p in self.rabbitmq.log_dir.glob("*.log") if p.name != "stdout.log"]
        return sum(p.read_text(errors="replace").count("accepting AMQP connection") for p in logs)

    def pg_backends(self) -> int:
        with self.engine.connect() as connection:
            sql = (
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND datname = current_database() AND pid <> pg_backend_pid()"
            )
            return int(connection.execute(sqlalchemy.text(sql)).scalar_one())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_amqp = max(self.peak_amqp, self.amqp_open())
            self.peak_pg = max(self.peak_pg, self.pg_backends())
            time.sleep(0.02)

    def __enter__(self) -> Sampler:
        self.peak_amqp, self.peak_pg = self.amqp_open(), self.pg_backends()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main() -> None:
    counts = h.sizes([400])
    silent = int(h.option("silent", "100"))
    with h.Infra() as infra:
        db_url = infra.database("postgresql", "health_flood")
        stack = infra.stack("health-flood", db_url)
        port = free_port()
        with h.stopping(stack):
            worker = stack.start_worker(processes=1, threads=2, extra_env={"BACKLANE_WORKER__METRICS_PORT": str(port)})
            h.wait_for(lambda: get(port)[0] == 200, timeout=90, interval=0.5, procs=[worker])
            time.sleep(2)  # the management API's statistics refresh every second
            sampler = Sampler(infra, db_url)
            rows = []
            for n in counts:
                amqp_before, pg_before = sampler.amqp_open(), sampler.pg_backends()
                accepted_before = sampler.amqp_accepted()
                with sampler, ThreadPoolExecutor(max_workers=n) as pool:
                    answers = list(pool.map(lambda _: get(port), range(n)))
                time.sleep(2)
                statuses = Counter(status for status, _ in answers)
                latencies = [t for _, t in answers]
                rows.append(
                    [
                        n,
                        " ".join(f"{k}x{v}" for k, v in sorted(statuses.items())),
                        f"{percentile(latencies, 0.5) * 1000:.0f}",
                        f"{percentile(latencies, 0.99) * 1000:.0f}",
                        f"{amqp_before}/{sampler.peak_amqp}/{sampler.amqp_open()}",
                        sampler.amqp_accepted() - accepted_before,
                        f"{pg_before}/{sampler.peak_pg}/{sampler.pg_backends()}",
                    ]
                )
            sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(silent)]
            probes = [get(port) for _ in range(5)]
            for s in sockets:
                s.close()
            print(
                h.table(
                    "/health under a flood of concurrent GETs (1 worker process, PostgreSQL)",
                    [
                        "GETs",
                        "answers",
                        "p50 ms",
                        "p99 ms",
                        "AMQP open before/peak/after",
                        "AMQP accepted",
                        "PG before/peak/after",
                    ],
                    rows,
                    [
                        f"with {silent} silent sockets open: probes answered "
                        + ", ".join(f"{status} in {t * 1000:.0f} ms" for status, t in probes),
                        h.machine(),
                    ],
                )
            )


if __name__ == "__main__":
    main()
