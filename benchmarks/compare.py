"""The same orders work on backlane, careful and plain Dramatiq and Celery 5, side by side.

    python benchmarks/compare.py [N] [--rounds=3] [--processes=2] [--threads=8]
        [--systems=backlane,careful,careful-quiet,dramatiq,backlane-discover,celery-threads,celery-prefork]
        [--profile=DIR]

One private RabbitMQ node and PostgreSQL server serve every run; each run gets a
fresh migrated database holding N pending orders and a fresh order API simulator
(``--order-settle-polls 0``: final at the first GET). The systems run interleaved,
round after round, so they share the machine's conditions; the 1-minute load average
is recorded before each run.

Every system but ``backlane-discover`` is fed the same way, so publishing is on the same
side for all: the harness publishes the N messages (Dramatiq's in confirmed batches of
2,000 through backlane's broker, Celery's with one producer), its CPU for that is the
*publisher* column, and the run is timed from the first publish to the N-th settled row.

* backlane: ``dramatiq actors scheduler`` (P processes x T threads); the harness
  publishes N ``process_orders`` messages (what discover would send); the registered
  orders pipeline does the work with everything backlane adds per order (guarded
  writes, outcome lines, metrics, attempts, pause checks).
* backlane-discover: the same workers, fed by backlane itself: one discover tick
  claims the N orders and publishes N messages inside a worker (its publishing CPU is
  in the worker column, the publisher column is 0); timed from the tick's send.
* careful: ``dramatiq plain_dramatiq``, actor ``careful_order``: the work as a careful
  engineer writes it on plain Dramatiq: the SELECT and the UPDATE built once at import,
  each one round trip in autocommit, one engine and one httpx client per process.
* careful-quiet: careful with httpx's INFO line per request off, as backlane has it by
  default (BACKLANE_LOG_HTTP_REQUESTS): what the same logging choice is worth there.
* dramatiq: the same module, actor ``plain_order``: each statement in its own
  ``connect()`` / ``begin()`` transaction, built per call (what most users write).
* celery-threads: P ``celery worker --pool=threads --concurrency=T`` instances;
  celery-prefork: one ``celery worker --pool=prefork --concurrency=P*T``; acks late,
  prefetch multiplier 1, no result backend; the plain function.

CPU ms per order is /proc utime+stime of each process tree (worker(s), simulator,
PostgreSQL, RabbitMQ) during the run, divided by N.

``--profile=DIR``: in the last round, py-spy records the first worker process of each Dramatiq
system (benchmarks/_profile.py); DIR/<system>-profile.md gives its CPU per order by thread
and its worker threads' CPU per order by the part of the stack they were in.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _harness as h
import _profile
from dramatiq.message import Message

from backlane.db.engine import Database

SYSTEMS = ("backlane", "careful", "careful-quiet", "dramatiq", "backlane-discover", "celery-threads", "celery-prefork")
#: The Dramatiq-shaped systems: (queue, actor) the harness publishes to, and the worker's module.
DRAMATIQ_SYSTEMS = {
    "backlane": ("orders", "process_orders", ()),
    "careful": ("careful_orders", "careful_order", ("plain_dramatiq",)),
    "careful-quiet": ("careful_orders", "careful_order", ("plain_dramatiq",)),
    "dramatiq": ("plain_orders", "plain_order", ("plain_dramatiq",)),
}
PUBLISH_BATCH = 2_000
TIMEOUT = 1800.0


def run_published(
    infra: h.Infra, system: str, n: int, processes: int, threads: int, profile: Path | None = None
) -> tuple[float, dict[str, float]]:
    """N orders published by the harness to ``system``'s workers: (orders/s, CPU ms per order by part).

    With ``profile`` (a directory), py-spy records the first worker process of a Dramatiq system
    and its breakdown is written there (:func:`write_profile`)."""
    import drain

    import scheduler  # backlane's broker publishes the Dramatiq messages in confirmed batches
    from devtools.sample import create_orders  # imports actors/, which builds its broker from the env

    db_url = infra.database("postgresql", "compare")
    db = Database(db_url)
    stack = infra.stack(
        f"{system}", db_url, PLAIN_POOL_SIZE=str(max(10, threads)), BACKLANE_ORDERS__STATUS_POLL_SECONDS="0.1"
    )
    queues = h.Queues(infra.amqp_url)
    workers = []
    with h.stopping(stack):
        h.start_simulator(stack, *drain.SIMULATOR_ARGS)
        simulator = stack.processes[-1]
        ids = create_orders(db, n, datetime.now(UTC))
        if system in DRAMATIQ_SYSTEMS:
            queue, actor, modules = DRAMATIQ_SYSTEMS[system]
            if system == "backlane":  # the worker as backlane runs it (its CLI's command line)
                workers.append(stack.start_worker(processes, threads))
            else:
                argv = [sys.executable, "-m", "dramatiq", *modules, "--processes", str(processes)]
                quiet = {"PLAIN_HTTPX_LINES": "off"} if system == "careful-quiet" else {}
                workers.append(h.spawn(stack, f"{system}-worker", [*argv, "--threads", str(threads)], **quiet))
            consumers = processes
        else:
            import plain_celery

            celery = [sys.executable, "-m", "celery", "-A", "plain_celery", "worker", "-Q", plain_celery.QUEUE]
            celery += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"]
            if system == "celery-threads":
                for i in range(processes):
                    args = ["--pool=threads", f"--concurrency={threads}", "-n", f"threads{i}@%h"]
                    workers.append(h.spawn(stack, f"celery-threads-{i}", [*celery, *args]))
                consumers = processes
            else:
                args = ["--pool=prefork", f"--concurrency={processes * threads}", "-n", "prefork@%h"]
                workers.append(h.spawn(stack, "celery-prefork", [*celery, *args]))
                consumers = 1
            queue = plain_celery.QUEUE
        for worker in workers:
            queues.wait_consumers(queue, consumers, worker, timeout=120)
        time.sleep(1.0)  # prefork children and thread pools finish starting
        parts = {
            **{f"worker{i}": w.proc.pid if w.proc else None for i, w in enumerate(workers)},
            "simulator": simulator.proc.pid if simulator.proc else None,
            "database": infra.postgres_pid,
            "rabbitmq": infra.rabbitmq.pid if infra.rabbitmq else None,
        }
        by_thread: dict[int, dict[int, float]] = {}
        if BY_THREAD and system in DRAMATIQ_SYSTEMS and workers[0].proc is not None:
            by_thread = {pid: _profile.thread_cpu(pid) for pid in h.process_tree(workers[0].proc.pid)}
        spy, profiled, threads_before = None, 0, {}
        if profile is not None and system in DRAMATIQ_SYSTEMS and workers[0].proc is not None:
            root = workers[0].proc.pid
            profiled = min(p for p in h.process_tree(root) if p != root)  # the first forked worker
            spy = _profile.start(profiled, profile / f"{system}.txt", rate=int(h.option("profile-rate", "200")))
            threads_before = _profile.thread_cpu(profiled)
        before = {name: h.cpu_seconds(pid) for name, pid in parts.items()}
        started = time.monotonic()
        publish_cpu = time.process_time()
        if system in DRAMATIQ_SYSTEMS:
            for start in range(0, n, PUBLISH_BATCH):
                batch: list[Message[Any]] = [
                    Message(queue_name=queue, actor_name=actor, args=(i,), kwargs={}, options={})
                    for i in ids[start : start + PUBLISH_BATCH]
                ]
                scheduler.broker.enqueue_many(batch)
        else:
            with plain_celery.app.producer_or_acquire() as producer:
                for i in ids:
                    plain_celery.celery_order.apply_async((i,), producer=producer)
        publish_cpu = time.process_time() - publish_cpu
        done = h.wait_for(lambda: h.settled(db) >= n, timeout=TIMEOUT, interval=0.1, procs=workers)
        used = {name: (h.cpu_seconds(pid) - before[name]) * 1000 / n for name, pid in parts.items()}
        if by_thread:
            THREAD_CPU.setdefault(system, []).append(thread_breakdown(workers[0], by_thread, n))
        if spy is not None and profile is not None:
            threads_after = _profile.thread_cpu(profiled)
            _profile.stop(spy)
            write_profile(profile, system, n / processes, threads_before, threads_after)
    queues.close()
    db.dispose()
    cpu = {
        "worker": sum(v for k, v in used.items() if k.startswith("worker")),
        **{k: v for k, v in used.items() if not k.startswith("worker")},
        "publisher": publish_cpu * 1000 / n,
    }
    return n / (done - started), cpu


#: ``--by-thread``: each Dramatiq system's worker CPU per order by process and thread role, read
#: from /proc without a profiler (one ``py-spy dump`` at the end of the run names the threads).
BY_THREAD = "--by-thread" in sys.argv
THREAD_CPU: dict[str, list[dict[str, float]]] = {}


def thread_breakdown(worker: Any, before: dict[int, dict[int, float]], n: int) -> dict[str, float]:
    """µs of CPU per order by "process: thread role" across the worker's process tree."""
    root = worker.proc.pid
    spent: dict[str, float] = {}
    for pid, threads_before in before.items():
        if not Path(f"/proc/{pid}/task").exists():
            continue
        after = _profile.thread_cpu(pid)
        roles = _profile.dumped_roles(pid)
        kind = "main process" if pid == root else "worker processes"
        for role, used in _profile.cpu_by_role(threads_before, after, roles).items():
            key = f"{kind}: {role} ({len(used)})" if pid == root else f"{kind}: {role}"
            spent[key] = spent.get(key, 0.0) + sum(used) * 1e6 / n
    return spent


def print_thread_cpu() -> None:
    """The means of :data:`THREAD_CPU` over the rounds, one column per system."""
    systems = list(THREAD_CPU)
    keys = sorted({k for runs in THREAD_CPU.values() for run in runs for k in run})
    rows = []
    for key in keys:
        rows.append([key, *(f"{statistics.mean(run.get(key, 0.0) for run in THREAD_CPU[s]):.0f}" for s in systems)])
    rows.append(["total", *(f"{statistics.mean(sum(run.values()) for run in THREAD_CPU[s]):.0f}" for s in systems)])
    print()
    print(
        h.table("Worker CPU µs per order by process and thread role (no profiler; means)", ["threads", *systems], rows)
    )


def write_profile(
    directory: Path, system: str, share: float, before: dict[int, float], after: dict[int, float]
) -> None:
    """The profiled worker process's CPU per order by thread role, and its worker threads' CPU
    per order split by the part of the stack py-spy found them in (µs per order). ``share``: the
    orders this process settled (the processes take about equal shares)."""
    raw = directory / f"{system}.txt"
    by_role = _profile.cpu_by_role(before, after, _profile.thread_roles(raw))
    roles = [
        [role, len(cpus), f"{sum(cpus) * 1e6 / share:.0f}"]
        for role, cpus in sorted(by_role.items(), key=lambda kv: -sum(kv[1]))
    ]
    worker_us = sum(by_role.get("worker thread", [])) * 1e6 / share
    parts = _profile.worker_thread_parts(raw)
    total = sum(parts.values()) or 1
    split = [
        [part, f"{count * 100 / total:.1f} %", f"{worker_us * count / total:.0f}"]
        for part, count in parts.most_common()
    ]
    text = h.table(f"{system}: CPU by thread, one worker process", ["threads", "count", "CPU µs/order"], roles)
    text += "\n\n" + h.table(
        f"{system}: the worker threads' {worker_us:.0f} µs/order by part of the stack ({total:,} samples)",
        ["part (innermost frame)", "share of samples", "µs/order"],
        split,
    )
    consumer_us = sum(by_role.get("consumer", [])) * 1e6 / share
    consumer_parts = _profile.worker_thread_parts(raw, "consumer")
    consumer_total = sum(consumer_parts.values()) or 1
    text += "\n\n" + h.table(
        f"{system}: the consumer threads' {consumer_us:.0f} µs/order by part of the stack ({consumer_total:,} samples)",
        ["part (innermost frame)", "share of samples", "µs/order"],
        [
            [part, f"{count * 100 / consumer_total:.1f} %", f"{consumer_us * count / consumer_total:.0f}"]
            for part, count in consumer_parts.most_common()
        ],
    )
    (directory / f"{system}-profile.md").write_text(text + "\n")
    print(text, flush=True)


def main() -> None:
    (n,) = h.sizes([10_000])[:1]
    rounds = int(h.option("rounds", "3"))
    processes = int(h.option("processes", str(h.PROCESSES)))
    threads = int(h.option("threads", str(h.THREADS)))
    systems = h.option("systems", ",".join(SYSTEMS)).split(",")
    profile_dir = h.option("profile", "")
    profile = Path(profile_dir) if profile_dir else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[tuple[float, dict[str, float], str]]] = {s: [] for s in systems}
    with h.Infra(with_postgres=True) as infra:
        os.environ.update(BACKLANE_BROKER__URL=infra.amqp_url, BACKLANE_WORKER__METRICS_PORT="0")
        os.environ["BACKLANE_DATABASE__URL"] = "sqlite:///" + str(infra.workdir / "unused.db")
        # Only now: importing the application (drain, devtools.sample: anything that imports
        # actors/) builds its broker from the environment, which must name this run's node.
        import drain

        for r in range(rounds):
            for system in systems:
                load = h.load()
                h.log(f"round {r + 1}/{rounds}: {system}, {n:,} orders (load {load}) ...")
                if system == "backlane-discover":
                    rate, cpu = drain.backlane(infra, "postgresql", n, processes, threads)
                    cpu = {"worker": cpu.pop("worker"), **cpu, "publisher": 0.0}  # published in the worker
                else:
                    last = r == rounds - 1
                    rate, cpu = run_published(infra, system, n, processes, threads, profile if last else None)
                h.log(f"  {rate:,.0f} orders/s; CPU ms/order { ({k: round(v, 2) for k, v in cpu.items()}) }")
                results[system].append((rate, cpu, load))
    rows = []
    summary: dict[str, tuple[float, float, float]] = {}
    for system in systems:
        runs = results[system]
        rates = [r for r, _, _ in runs]
        worker = [c["worker"] for _, c, _ in runs]
        sending = [c["worker"] + c["publisher"] for _, c, _ in runs]
        parts = [
            statistics.mean(c[k] for _, c, _ in runs)
            for k in ("worker", "publisher", "simulator", "database", "rabbitmq")
        ]
        summary[system] = (statistics.mean(rates), statistics.mean(worker), statistics.mean(sending))
        rows.append(
            [
                system,
                ", ".join(f"{r:,.0f}" for r in rates),
                statistics.mean(rates),
                ", ".join(f"{w:.2f}" for w in worker),
                statistics.mean(sending),
                " / ".join(f"{p:.2f}" for p in parts),
                ", ".join(load for _, _, load in runs),
            ]
        )
    print(
        h.table(
            f"Orders side by side: {n:,} orders per run, {rounds} interleaved rounds, PostgreSQL"
            f" ({processes} processes x {threads} threads; {h.machine()}; load at the end {h.load()})",
            [
                "system",
                "orders/s per round",
                "mean orders/s",
                "worker CPU ms/order per round",
                "mean worker + publisher CPU ms/order",
                "mean CPU ms/order: worker / publisher / sim / db / broker",
                "load before each run",
            ],
            rows,
            [
                "publisher: the harness's CPU publishing the N messages (every system but backlane-discover);"
                " backlane-discover's tick claims and publishes inside the worker, so its worker column holds it",
            ],
        )
    )
    if THREAD_CPU:
        print_thread_cpu()
    if "backlane" in summary:
        ratios = []
        ours_rate, ours_cpu, ours_sending = summary["backlane"]
        for other in systems:
            if other == "backlane":
                continue
            their_rate, their_cpu, their_sending = summary[other]
            ratios.append(
                [
                    f"backlane / {other}",
                    f"{ours_rate / their_rate:.2f}x",
                    f"{their_cpu / ours_cpu:.2f}x",
                    f"{their_sending / ours_sending:.2f}x",
                ]
            )
        print()
        print(
            h.table(
                "Ratios (means): orders/s, and worker CPU per order as other / backlane (above 1: backlane uses less)",
                ["comparison", "orders/s ratio", "worker CPU efficiency", "worker + publisher CPU efficiency"],
                ratios,
            )
        )


if __name__ == "__main__":
    main()
