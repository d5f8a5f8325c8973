"""Photo vectorization against a slow embeddings API: photos per second against the bound.

    python benchmarks/vectorize.py [N ...] [--latency-ms=200] [--shapes=2x8] [--database=sqlite]

With every call to the embeddings API taking ``--latency-ms``, a worker of P processes x T
threads vectorizes at most P x T / latency photos per second (one call per photo). N pending
product photos (small PNGs in a storage directory) go through one discover tick
(``product_photos``, max_items = N), RabbitMQ, the per-photo actor (read from storage, the
Azure wire format to the simulator, 1024 floats back, checked, stored), timed from the tick's
send until the N-th photo is vectorized; the table gives the share of the bound reached.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import _harness as h
from sqlalchemy import func, select

from actors.photos.models import Photo
from backlane.clients.storage import DirectoryStorage
from backlane.db.engine import Database
from devtools.sample import create_photos

PIPELINE = "product_photos"


def vectorized(db: Database) -> int:
    with db.transaction() as session:
        return int(session.scalar(select(func.count()).where(Photo.status == "vectorized")) or 0)


def drain(infra: h.Infra, kind: str, n: int, processes: int, threads: int, latency_ms: float) -> tuple[float, float]:
    """(photos/s, worker CPU ms per photo)."""
    import scheduler  # noqa: F401  (declares the discover actors)
    from backlane.core.registry import REGISTRY

    db_url = infra.database(kind, f"vectorize_{processes}x{threads}")
    db = Database(db_url)
    storage = infra.workdir / f"storage-{processes}x{threads}"
    stack = infra.stack(
        f"vectorize-{processes}x{threads}",
        db_url,
        BACKLANE_STORAGE__ROOT=str(storage),
        BACKLANE_PRODUCT_PHOTOS__MAX_ITEMS=str(n),
        BACKLANE_DATABASE__POOL_SIZE=str(max(10, threads)),
    )
    queues = h.Queues(infra.amqp_url)
    with h.stopping(stack):
        _, url = stack.start_simulator(None, "--latency-ms", str(latency_ms))
        stack.env[f"BACKLANE_{PIPELINE.upper()}__BASE_URL"] = url
        create_photos(db, DirectoryStorage(storage), PIPELINE, n, datetime.now(UTC))
        worker = stack.start_worker(processes, threads)
        queues.wait_consumers(PIPELINE, processes, worker)
        queues.wait_consumers("discover", processes, worker)
        assert worker.proc is not None
        before = h.cpu_seconds(worker.proc.pid)
        started = time.monotonic()
        REGISTRY.get(PIPELINE).discover_actor.send()
        done = h.wait_for(lambda: vectorized(db) >= n, timeout=3600, interval=0.2, procs=[worker])
        cpu = h.cpu_seconds(worker.proc.pid) - before
    queues.close()
    db.dispose()
    return n / (done - started), cpu * 1000 / n


def main() -> None:
    counts = h.sizes([1_000])
    latency_ms = float(h.option("latency-ms", "200"))
    shapes = [tuple(int(x) for x in s.split("x")) for s in h.option("shapes", "2x8").split(",")]
    kind = h.option("database", "sqlite")
    rows = []
    with h.Infra(with_postgres=kind == "postgresql") as infra:
        os.environ.update(BACKLANE_BROKER__URL=infra.amqp_url, BACKLANE_WORKER__METRICS_PORT="0")
        for n in counts:
            for processes, threads in shapes:
                bound = processes * threads / (latency_ms / 1000)
                h.log(f"{n} photos, {processes}x{threads}, bound {bound:,.0f}/s ...")
                load = h.load()
                rate, cpu = drain(infra, kind, n, processes, threads, latency_ms)
                h.log(f"  {rate:,.1f} photos/s, worker CPU {cpu:.2f} ms/photo")
                rows.append([kind, n, f"{processes}x{threads}", bound, rate, f"{rate / bound:.0%}", f"{cpu:.2f}", load])
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
                "worker CPU ms/photo",
                "load before",
            ],
            rows,
            [
                f"bound = processes x threads / {latency_ms:.0f} ms (one call per photo)",
                "one discover tick (max_items = N) -> RabbitMQ -> process_product_photos -> storage -> simulator"
                " (Azure wire format, 1024 floats) -> database, from the tick's send to the N-th vectorized row",
                "worker CPU: /proc utime + stime of the dramatiq process tree during the drain",
            ],
        )
    )


if __name__ == "__main__":
    main()
