"""Bulk requeue: 100,000 dead letters requeued by a job, stopped at half and resumed (hand-run).

    python benchmarks/bulk_requeue.py [LETTERS ...] [--db=sqlite|postgresql]

For each size (default 20,000 and 100,000) a private RabbitMQ node gets that many dead
letters in ``orders_inbox.XQ``, each with its own message id. Then, as an operator runs it:

1. ``backlane dead-letters requeue --all --queue orders_inbox`` in its own process (the runner);
2. once its job's row says half are done, the stop ``backlane jobs stop ID`` writes (written by
   this script, without a command's start-up time); the runner stops between two letters and exits;
3. ``backlane jobs resume ID`` runs the rest in a new process.

Each runner's resident memory is sampled every 20 ms (its peak is the table's); the letters
per second are each run's own (letters it requeued over the time from its first progress
write to its end). At the end every message on ``orders_inbox`` is read: each id must be
there exactly once, none left in ``.XQ``, and the job's ``done`` equal to the size. The
in-memory cost of the id hashes the runner keeps (to requeue an id once per run) is measured
apart with tracemalloc. Nothing consumes ``orders_inbox`` meanwhile (no worker runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path

import _harness as h
from _orders_data import drain_message_ids, fill_dead_letters

from backlane.db.engine import Database
from backlane.operations.jobs import get_job, list_jobs
from backlane.operations.jobs.letters import _id_key
from backlane.operations.jobs.store import request_stop

QUEUE = "orders_inbox"
XQ = f"{QUEUE}.XQ"


class Sampled:
    """A command in its own process, its peak RSS sampled every 20 ms."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.peak = 0
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while self.proc.poll() is None:
            self.peak = max(self.peak, h.rss_bytes(self.proc.pid))
            time.sleep(0.02)

    def wait(self, timeout: float = 3600) -> tuple[int, str, str, float]:
        out, err = self.proc.communicate(timeout=timeout)
        self.thread.join()
        return self.proc.returncode, out, err, time.monotonic() - self.started


def follow(db: Database, job_id: int, command: Sampled, first_done: int, stop_at: int | None = None) -> float:
    """Watch one run to its end (asking it to stop once ``stop_at`` letters are done): its letters
    per second, from its first progress write with letters done to the end of the process."""
    start_at = start_done = None
    asked = False
    while command.proc.poll() is None:
        done = get_job(db, job_id).done
        if start_at is None and done > first_done:
            start_at, start_done = time.monotonic(), done
        if stop_at is not None and not asked and done >= stop_at:
            # The stop `backlane jobs stop ID` writes, written from here: a command would start a
            # Python process first (a second or two: thousands of letters at this rate).
            request_stop(db, datetime.now(UTC), job_id)
            asked = True
        time.sleep(0.02)
    end = time.monotonic()
    job = get_job(db, job_id)
    if start_at is None or start_done is None or end <= start_at:
        return float("nan")
    return (job.done - start_done) / (end - start_at)


def hash_set_cost(count: int) -> float:
    """Bytes per id of the set of 64-bit hashes a requeue run keeps."""
    keys = [uuid.uuid4().hex for _ in range(count)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    seen = {_id_key(k) for k in keys}
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(seen) == count
    return (after - before) / count


def one(infra: h.Infra, kind: str, count: int) -> list[object]:
    url = infra.database(kind, f"bulk_{count}")
    env = {
        **os.environ,
        "BACKLANE_BROKER__URL": infra.amqp_url,
        "BACKLANE_BROKER__MANAGEMENT_URL": infra.rabbitmq.management_url if infra.rabbitmq else "",
        "BACKLANE_DATABASE__URL": url,
        "BACKLANE_WORKER__METRICS_PORT": "0",
        "PYTHONPATH": str(h.ROOT),
    }
    cli = [sys.executable, "-m", "backlane.cli"]
    for command in ("migrate", "declare-queues"):  # the pipelines' own migrations too
        subprocess.run([*cli, command], env=env, check=True, capture_output=True)
    queues = h.Queues(infra.amqp_url)
    queues.purge(QUEUE, XQ)
    h.log(f"{count:,}: filling {XQ}")
    fill_dead_letters(infra.amqp_url, QUEUE, "receive_order_created", count)
    db = Database(url)

    h.log(f"{count:,}: first run, stopped at half")
    first = Sampled([*cli, "dead-letters", "requeue", "--all", "--queue", QUEUE], env)
    try:
        h.wait_for(lambda: bool(list_jobs(db, 1)) or first.proc.poll() is not None, timeout=60)
    except TimeoutError:
        first.proc.kill()
        raise
    if first.proc.poll() is not None and not list_jobs(db, 1):
        raise RuntimeError(f"the requeue command ended without a job: {first.wait()}")
    job = list_jobs(db, 1)[0]
    job_id = int(job.id)
    first_rate = follow(db, job_id, first, 0, stop_at=count // 2)
    code, _out, err, first_wall = first.wait()
    stopped = get_job(db, job_id)
    assert code == 0 and stopped.status == "stopped", (code, err, stopped.status)
    left_after_stop = queues.state(XQ)[0]
    assert left_after_stop == count - stopped.done, (left_after_stop, stopped.done)

    h.log(f"{count:,}: stopped at {stopped.done:,}; resuming")
    second = Sampled([*cli, "jobs", "resume", str(job_id)], env)
    second_rate = follow(db, job_id, second, stopped.done)
    code, _out, err, second_wall = second.wait()
    assert code == 0, err
    finished = get_job(db, job_id)
    ids = drain_message_ids(infra.amqp_url, QUEUE)
    left = queues.state(XQ)[0]
    queues.close()
    once = len(ids) == count and len(set(ids)) == count
    assert once and left == 0 and finished.done == count, (len(ids), len(set(ids)), left, finished.done)
    db.dispose()
    return [
        count,
        kind,
        stopped.done,
        f"{first_rate:,.0f}",
        f"{second_rate:,.0f}",
        f"{first_wall:.1f} + {second_wall:.1f}",
        f"{first.peak / 2**20:.0f}",
        f"{second.peak / 2**20:.0f}",
        "yes" if once else "NO",
        finished.done,
        left,
    ]


def main() -> None:
    counts = h.sizes([20_000, 100_000])
    kind = h.option("db", "sqlite")
    rows = []
    with h.Infra(with_postgres=kind == "postgresql") as infra:
        for count in counts:
            rows.append(one(infra, kind, count))
    cost = hash_set_cost(100_000)
    print(
        h.table(
            f"Bulk requeue job: stopped at half, resumed ({h.machine()}, load {h.load()})",
            [
                "letters",
                "db",
                "stopped at",
                "run 1 letters/s",
                "run 2 letters/s",
                "wall s",
                "run 1 peak RSS MiB",
                "run 2 peak RSS MiB",
                "each once",
                "done",
                "left in .XQ",
            ],
            rows,
            [
                "letters/s: each run's own, from its first progress write with letters done to its process's end",
                "wall s: each command's whole time, Python start-up and the count of the .XQ included",
                "peak RSS: the runner's process (`backlane dead-letters requeue --all`, then `backlane jobs resume`)",
                f"the id hashes a run keeps: {cost:.0f} bytes per requeued letter (tracemalloc, 100,000 ids)",
                "each once: every message id of the size on orders_inbox exactly once, read back after the resume",
            ],
        )
    )


if __name__ == "__main__":
    Path(h.BENCH_DIR / "results").mkdir(exist_ok=True)
    main()
