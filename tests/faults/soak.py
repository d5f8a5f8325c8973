"""The chaos soak: the whole system for a given time, new orders arriving all along, faults from
the suite's list arriving at random, then the suite's accounting plus resource bounds.

    python -m tests.faults.soak                      # an hour, a random seed (printed first)
    python -m tests.faults.soak --minutes 5 --seed 42

The faults: a worker SIGKILLed (its supervisor starts another), a worker frozen (SIGSTOP) for
a while, RabbitMQ killed and started again, PostgreSQL stopped and started, RabbitMQ's memory
or disk alarm on for a while, the order API down, the order API answering 429s, malformed
messages, a second clock for a while. Staging batches arrive all along beside the orders, each
scraped at its vendor. The checks, when the faults stop and everything settled: every order
settled once at the order API or failed with its reason (none twice), every staging batch
completed or failed with its reason (none called twice at its vendor), every dead letter
accounted for by a failed row or a message injected on purpose, no process lost, and each
worker process within the bounds below (RSS, file descriptors, threads), the database's and
RabbitMQ's connection counts too. The seed decides the faults, their moments and lengths: a
failing run is replayed with the same seed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from devtools.infra.process import children_of
from devtools.sample import create_orders
from tests.faults.harness import FaultRun, Infra, Outcome, Scale, envelope

#: One worker process (8 threads) stays under these, whatever the faults.
MAX_RSS_MB = 400
MAX_FDS = 400
MAX_THREADS = 80
#: The whole system's database connections: a few per process, whatever the faults.
MAX_DB_CONNECTIONS = 60
#: AMQP connections a worker process opens: Dramatiq gives each consumed queue (and its .DQ)
#: a consumer connection of its own and each worker thread a publishing one, plus a few of
#: backlane's (the /health probe, the blocked-broker watch). The soak's bound is that for one
#: more worker than it runs (a killed one's connections last until its heartbeats are missed,
#: while its replacement opens its own) plus 10 for the clocks and the commands.
AMQP_PER_WORKER_EXTRA = 4

SOAK = Scale("soak", orders=200, tracks=20, latency_ms=40, settle_timeout=420, lease_seconds=30, batches=10)
#: New staging batches per second for each vendor, beside the orders: the vendors' scrape is
#: the side effect a worker frozen past its lease would repeat without its fence.
BATCH_RATE = 0.5


@dataclass
class Soak:
    run: FaultRun
    rng: random.Random
    #: New orders per second: about half of what the system places at this latency.
    rate: float
    faults: list[str] = field(default_factory=list)
    peaks: dict[str, float] = field(default_factory=dict)
    amqp_bound: int = 0

    # -- the faults ------------------------------------------------------------

    def worker_kill(self) -> str:
        victim = self.rng.choice(self.run.workers())
        self.run.kill(victim)
        return f"SIGKILL {victim.name}"

    def worker_freeze(self) -> str:
        victim = self.rng.choice(self.run.workers())
        seconds = self.rng.uniform(5, 40)
        pgid = os.getpgid(victim.proc.pid) if victim.proc is not None else None
        if pgid is None:
            return "freeze: no worker"
        os.killpg(pgid, signal.SIGSTOP)
        try:
            self.pause(seconds)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGCONT)
        return f"SIGSTOP {victim.name} {seconds:.0f}s"

    def rabbitmq_restart(self) -> str:
        self.run.infra.rabbitmq.kill()
        seconds = self.rng.uniform(2, 20)
        self.pause(seconds)
        self.run.infra.rabbitmq.start()
        return f"RabbitMQ kill -9, back after {seconds:.0f}s"

    def postgres_restart(self) -> str:
        self.run.infra.postgres.stop()
        seconds = self.rng.uniform(2, 30)
        self.pause(seconds)
        self.run.infra.postgres.start()
        self.run.db.dispose()
        return f"PostgreSQL down {seconds:.0f}s"

    def memory_alarm(self) -> str:
        seconds = self.rng.uniform(5, 30)
        self.run.infra.rabbitmq.ctl("set_vm_memory_high_watermark", "0.00001")
        try:
            self.pause(seconds)
        finally:
            self.run.infra.rabbitmq.ctl("set_vm_memory_high_watermark", "0.4")
        return f"memory alarm {seconds:.0f}s"

    def disk_alarm(self) -> str:
        seconds = self.rng.uniform(5, 30)
        self.run.infra.rabbitmq.ctl("set_disk_free_limit", "10000GB")
        try:
            self.pause(seconds)
        finally:
            self.run.infra.rabbitmq.ctl("set_disk_free_limit", "50MB")
        return f"disk alarm {seconds:.0f}s"

    def api_outage(self) -> str:
        seconds = self.rng.uniform(5, 30)
        self.run.configure_sim(outage=["orders"])
        try:
            self.pause(seconds)
        finally:
            self.run.configure_sim(outage=[])
        return f"order API down {seconds:.0f}s"

    def storm_429(self) -> str:
        seconds = self.rng.uniform(5, 30)
        self.run.configure_sim(rate_limits={"orders.create": [5, 2]})
        try:
            self.pause(seconds)
        finally:
            self.run.configure_sim(rate_limits={})
        return f"429 storm {seconds:.0f}s"

    def poison(self) -> str:
        for queue in ("orders", "orders_inbox"):
            marker = f"soak-marker-{uuid.uuid4().hex}"
            self.run.injected_markers.add(marker)
            self.run.publish_raw(queue, f"not JSON {marker} {{".encode())
            message_id = str(uuid.uuid4())
            self.run.injected_ids.add(message_id)
            actor = "process_orders" if queue == "orders" else "order_created"
            self.run.publish_raw(queue, envelope(queue, actor, ["not an item"], message_id), message_id)
        return "4 malformed messages"

    def two_clocks(self) -> str:
        seconds = self.rng.uniform(30, 90)
        clock = self.run.start_clock()
        self.pause(seconds)
        self.run.terminate(clock, replace=False)
        return f"a second clock for {seconds:.0f}s"

    FAULTS: tuple[str, ...] = (
        "worker_kill",
        "worker_freeze",
        "rabbitmq_restart",
        "postgres_restart",
        "memory_alarm",
        "disk_alarm",
        "api_outage",
        "storm_429",
        "poison",
        "two_clocks",
    )

    # -- the load and the watch ---------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Wait ``seconds`` while orders keep arriving, processes are supervised and sampled."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.tick()
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    _owed: float = 0.0
    _owed_batches: float = 0.0
    _last: float = field(default_factory=time.monotonic)

    def tick(self) -> None:
        now = time.monotonic()
        self._owed += (now - self._last) * self.rate
        self._owed_batches += (now - self._last) * BATCH_RATE
        self._last = now
        count = int(self._owed)
        if count:
            with contextlib.suppress(Exception):  # the database may be the fault: they come later
                self.run.order_ids += create_orders(self.run.db, count, datetime.now(UTC))
                self._owed -= count
        batches = int(self._owed_batches)
        if batches:
            with contextlib.suppress(Exception):
                self.run.seed_batches(batches)
                self._owed_batches -= batches
        self.run.supervise()
        self.sample()

    def sample(self) -> None:
        for proc in self.run.workers():
            for pid in _children(proc.proc.pid if proc.proc is not None else None):
                for name, value in _usage(pid).items():
                    self.peaks[name] = max(self.peaks.get(name, 0.0), value)
        with contextlib.suppress(Exception):
            with self.run.db.transaction() as session:
                count = session.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d"), {"d": self.run.db_name}
                ).scalar_one()
            self.peaks["db_connections"] = max(self.peaks.get("db_connections", 0.0), float(count))
        with contextlib.suppress(Exception):
            amqp = len(self.run.mgmt("GET", "/api/connections").json())
            self.peaks["amqp_connections"] = max(self.peaks.get("amqp_connections", 0.0), float(amqp))
            queues = [q["name"] for q in self.run.mgmt("GET", "/api/queues").json()]
            consumed = sum(1 for name in queues if not name.endswith(".XQ"))
            per_worker = consumed + self.run.threads + AMQP_PER_WORKER_EXTRA
            self.amqp_bound = max(self.amqp_bound, (self.run.n_workers + 1) * per_worker + 10)


def _children(pid: int | None) -> list[int]:
    """The worker's processes: the dramatiq parent and its children."""
    return [] if pid is None else [pid, *children_of(pid)]


def _usage(pid: int) -> dict[str, float]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return {}
    values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kb = float(values.get("VmRSS", "0 kB").split()[0])
    return {"rss_mb": rss_kb / 1024, "fds": float(fds), "threads": float(values.get("Threads", "0").strip())}


def soak(infra: Infra, minutes: float, seed: int, rate: float = 5.0, gap: tuple[float, float] = (10, 40)) -> Outcome:
    """Run the soak; its outcome (the suite's accounting, plus the bounds as problems)."""
    rng = random.Random(seed)
    env = {"BACKLANE_BROKER__HEARTBEAT_SECONDS": "5", "BACKLANE_ORDERS__LEASE_SECONDS": "30"}
    run = FaultRun(infra, f"chaos soak {minutes:g} min, seed {seed}", SOAK, workers=2, env=env)
    run.setup()
    state = Soak(run, rng, rate)
    try:
        run.start()
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            state.pause(rng.uniform(*gap))
            if time.monotonic() >= end:
                break
            name = rng.choice(Soak.FAULTS)
            fault: Callable[[], str] = getattr(state, name)
            started = time.monotonic()
            try:
                said = fault()
            except Exception as exc:  # a fault that could not be made is a note, not the end
                said = f"{name} not done: {type(exc).__name__}: {exc}"[:200]
            infra.ensure_up()
            state.faults.append(f"{time.monotonic() - run.started_at:6.0f}s {said} ({time.monotonic() - started:.0f}s)")
            print(state.faults[-1], flush=True)
            if time.monotonic() - run._last_kick > 15:
                run.trigger()
        run.clear_fault()
        run.wait_settled()
        outcome = run.account()
        state.sample()
    finally:
        run.stack.stop_all(timeout=30)
        with contextlib.suppress(Exception):
            run.db.dispose()
    outcome.notes.append(
        f"{len(run.order_ids)} orders and {len(run.batch_ids)} staging batches over the run; faults: "
        + "; ".join(state.faults)
    )
    peaks = state.peaks
    outcome.notes.append("peaks: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(peaks.items())))
    outcome.notes.append(
        f"bounds: per worker process rss_mb {MAX_RSS_MB}, fds {MAX_FDS}, threads {MAX_THREADS}; "
        f"db_connections {MAX_DB_CONNECTIONS}, amqp_connections {state.amqp_bound}"
    )
    bounds = {
        "rss_mb": MAX_RSS_MB,
        "fds": MAX_FDS,
        "threads": MAX_THREADS,
        "db_connections": MAX_DB_CONNECTIONS,
        "amqp_connections": state.amqp_bound,
    }
    for name, bound in bounds.items():
        if peaks.get(name, 0) > bound:
            outcome.problems.append(f"{name} reached {peaks[name]:.0f}, over its bound {bound}")
    return outcome


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the faults go on (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: a new one, printed)")
    parser.add_argument("--rate", type=float, default=5.0, help="new orders per second (default 5)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**9)
    print(f"chaos soak: {args.minutes:g} min, seed {seed} (replay: --seed {seed})", flush=True)
    infra = Infra().start()
    try:
        outcome = soak(infra, args.minutes, seed, args.rate)
    finally:
        infra.close()
    print(_report(outcome))
    return 0 if outcome.ok else 1


def _report(outcome: Outcome) -> str:
    from tests.faults.__main__ import details, table

    return table([outcome]) + "\n\n" + details([outcome])


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["SOAK", "Soak", "main", "soak"]
