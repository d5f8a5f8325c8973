"""Photo vectorization against a slow embeddings API: photos per second against the bound.

    python benchmarks/vectorize.py [N ...] [--latency-ms=200] [--shapes=2x8] [--databases=postgresql,sqlite]

With every call to the embeddings API taking ``--latency-ms``, a worker of P processes x T
threads vectorizes at most P x T / latency photos per second (one call per photo): the
concurrency bound. N pending product photos (the sample data's small PNGs, in a storage
directory) go through one discover tick (``backlane trigger product_photos``, max_items = N),
RabbitMQ, the per-photo actor of real ``dramatiq actors scheduler`` worker processes (read
from storage, the Azure wire format to the simulator, 1024 floats back, checked, stored). The
rate is taken from the rows themselves: (N - 1) / (last ``vectorized_at`` - first), so neither
the CLI's start-up nor the worker's first fetch is counted; the table gives its share of the
bound, and the rate from the trigger's start to the N-th row beside it.

Nothing that builds backlane's broker (``actors``, ``devtools.sample``, ``scheduler``) is
imported before the private RabbitMQ node's URL is in the environment: importing ``actors``
builds the broker from the environment once per process, and an earlier version of this
benchmark sent its discover to the default port that way. The tick is sent by the CLI, in
the stack's own environment, as an operator sends it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import _harness as h
from sqlalchemy import func, select

from backlane.db.engine import Database

PIPELINE = "product_photos"
TIMEOUT = 1800.0


def vectorized(db: Database) -> int:
    from actors.photos.models import Photo

    with db.transaction() as session:
        return int(session.scalar(select(func.count()).where(Photo.status == "vectorized")) or 0)


def span(db: Database) -> tuple[datetime, datetime, int, int]:
    """(first vectorized_at, last, photos vectorized, photos failed)."""
    from actors.photos.models import Photo

    with db.transaction() as session:
        first, last, done = session.execute(
            select(func.min(Photo.vectorized_at), func.max(Photo.vectorized_at), func.count()).where(
                Photo.status == "vectorized"
            )
        ).one()
        failed = session.scalar(select(func.count()).where(Photo.status == "failed")) or 0
    return first, last, int(done), int(failed)


def drain(
    infra: h.Infra, kind: str, n: int, processes: int, threads: int, latency_ms: float
) -> tuple[float, float, dict[str, float], int]:
    """(photos/s first to last vectorized, photos/s trigger to last, CPU ms per photo of each part, failed)."""
    from backlane.clients.storage import DirectoryStorage
    from devtools.sample import create_photos

    shape = f"{processes}x{threads}"
    db_url = infra.database(kind, f"vectorize_{kind}_{shape}")
    db = Database(db_url)
    storage = infra.workdir / f"storage-{kind}-{shape}"
    stack = infra.stack(
        f"vectorize-{kind}-{shape}",
        db_url,
        BACKLANE_STORAGE__KIND="directory",
        BACKLANE_STORAGE__ROOT=str(storage),
        BACKLANE_PRODUCT_PHOTOS__MAX_ITEMS=str(n),
        BACKLANE_PRODUCT_PHOTOS__PROVIDER="azure",
        BACKLANE_DATABASE__POOL_SIZE=str(max(10, threads + 2)),
    )
    queues = h.Queues(infra.amqp_url)
    with h.stopping(stack):
        simulator, url = stack.start_simulator(None, "--latency-ms", str(latency_ms))
        stack.env[f"BACKLANE_{PIPELINE.upper()}__BASE_URL"] = url
        create_photos(db, DirectoryStorage(storage), PIPELINE, n, datetime.now(UTC))
        worker = stack.start_worker(processes, threads)
        queues.wait_consumers(PIPELINE, processes, worker)
        queues.wait_consumers("discover", processes, worker)
        parts = h.process_parts(worker, simulator, infra, kind)
        before = {name: h.cpu_seconds(pid) for name, pid in parts.items()}
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "backlane.cli", "trigger", PIPELINE],
            env={**os.environ, **stack.env},
            capture_output=True,
            timeout=120,
            check=True,
        )
        done = h.wait_for(lambda: vectorized(db) >= n, timeout=TIMEOUT, interval=0.2, procs=[worker])
        cpu = {name: (h.cpu_seconds(pid) - before[name]) * 1000 / n for name, pid in parts.items()}
        first, last, count, failed = span(db)
    queues.close()
    db.dispose()
    assert count == n, f"{count} photos vectorized, {n} expected"
    seconds = (last - first).total_seconds()
    return (n - 1) / seconds, n / (done - started), cpu, failed


def main() -> None:
    counts = h.sizes([2_000])
    latency_ms = float(h.option("latency-ms", "200"))
    shapes = [tuple(int(x) for x in s.split("x")) for s in h.option("shapes", f"{h.PROCESSES}x{h.THREADS}").split(",")]
    kinds = h.option("databases", "postgresql,sqlite").split(",")
    rows = []
    with h.Infra(with_postgres="postgresql" in kinds) as infra:
        assert infra.rabbitmq is not None
        # Before anything imports actors (which builds the broker from the environment, once).
        os.environ.update(
            BACKLANE_BROKER__URL=infra.amqp_url,
            BACKLANE_BROKER__MANAGEMENT_URL=infra.rabbitmq.management_url,
            BACKLANE_WORKER__METRICS_PORT="0",
        )
        for n in counts:
            for kind in kinds:
                for processes, threads in shapes:
                    # --latency-ms=0: no bound from the API, the rate is the CPU-bound one.
                    bound = processes * threads / (latency_ms / 1000) if latency_ms > 0 else float("inf")
                    load = h.load()
                    h.log(f"{kind}: {n} photos, {processes}x{threads}, bound {bound:,.0f}/s, load {load} ...")
                    rate, wall, cpu, failed = drain(infra, kind, n, processes, threads, latency_ms)
                    h.log(f"  {rate:,.1f} photos/s ({wall:,.1f} from the trigger), CPU ms/photo {cpu}")
                    rows.append(
                        [
                            kind,
                            n,
                            f"{processes}x{threads}",
                            bound,
                            rate,
                            f"{rate / bound:.0%}" if latency_ms > 0 else "-",
                            wall,
                            " / ".join(f"{cpu[k]:.2f}" for k in ("worker", "simulator", "database", "rabbitmq")),
                            failed,
                            load,
                        ]
                    )
    print(
        h.table(
            f"Photo vectorization: embeddings API answering in {latency_ms:.0f} ms ({h.machine()}; load {h.load()})",
            [
                "database",
                "photos",
                "processes x threads",
                "bound photos/s",
                "backlane photos/s",
                "of bound",
                "photos/s from the trigger",
                "CPU ms/photo: worker / sim / db / broker",
                "failed",
                "load before",
            ],
            rows,
            [
                f"bound = processes x threads / {latency_ms:.0f} ms (one embeddings call per photo)",
                "`backlane trigger product_photos` (max_items = N) -> one discover tick -> RabbitMQ ->"
                " process_product_photos -> directory storage -> simulator (Azure wire format, 1024 floats,"
                f" --latency-ms {latency_ms:.0f}) -> database",
                "backlane photos/s = (N - 1) / (last vectorized_at - first): the steady rate, without the"
                " CLI's start-up and the first fetch; from the trigger: N / (N-th row seen - trigger started)",
                "CPU ms/photo: CPU time each part used during the drain, per photo (/proc utime + stime of"
                " each process tree: the dramatiq workers, the simulator, PostgreSQL (0 for SQLite: in the"
                " workers), the RabbitMQ node)",
                "load before: the machine's 1-minute load average before each run (a shared machine)",
            ],
        )
    )


if __name__ == "__main__":
    main()
