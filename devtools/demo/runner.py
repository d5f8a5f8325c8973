"""The demo's order of things, and its exit status: load the registry and its demo parts, check
the options, start what is needed, seed, watch, prove and explain, stop everything.

0 when every part settled with its checks passing; 1 when one did not (or the demo could
not go on: one line on stderr); 2 for a mistake in the options (before anything starts);
130 on Ctrl-C, everything stopped cleanly. Nothing here names a pipeline: each is a
:class:`~devtools.demo.part.DemoPart` found by :mod:`devtools.demo.discovery`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from backlane.core.clock import SystemClock
from backlane.db.engine import Database
from backlane.settings import SettingsError
from devtools.demo import rendering
from devtools.demo.discovery import Parts, find_parts, load_registered
from devtools.demo.errors import DemoError
from devtools.demo.infrastructure import (
    Running,
    declare_queues,
    dispose,
    find_or_start_rabbitmq,
    lock,
    start_dashboard,
    start_simulators,
)
from devtools.demo.options import DemoOptions, parse_options
from devtools.demo.part import DemoContext, DemoPart
from devtools.demo.watch import watch
from devtools.stack import Stack

DEMO_DIR = Path(".backlane/demo")
#: Settings every process of the demo gets, whatever the pipelines: quick retries, no fixed
#: metrics port (a second worker on the host), the storage root inside the demo's folder.
BASE_ENV = {
    "BACKLANE_RETRIES__MIN_BACKOFF_MS": "500",
    "BACKLANE_RETRIES__MAX_BACKOFF_MS": "5000",
    "BACKLANE_WORKER__METRICS_PORT": "0",
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        found = find_parts(load_registered())
    except (SettingsError, DemoError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    options = parse_options(argv, found.parts)  # a mistake: usage and exit status 2, before anything starts
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return run_demo(options, found)


def run_demo(options: DemoOptions, found: Parts) -> int:
    running = Running()
    try:
        return _run(options, found, running)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything ...", flush=True)
        return 130
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        running.stop()


def _run(options: DemoOptions, found: Parts, running: Running) -> int:
    parts = found.parts
    workdir = DEMO_DIR.resolve()
    running.lock = lock(workdir)
    dispose(workdir, ("db", "storage"))
    (workdir / "db").mkdir(parents=True, exist_ok=True)
    db_url = os.environ.get("BACKLANE_DATABASE__URL") or f"sqlite:///{workdir / 'db' / 'backlane.db'}"
    print("backlane demo: every pipeline on this machine; Ctrl-C stops everything", flush=True)
    amqp_url, management_url = find_or_start_rabbitmq(workdir, running)
    print(f"RabbitMQ management UI: {management_url}  (guest / guest)")
    stack = running.stack = Stack(
        workdir / "logs",
        {
            "BACKLANE_BROKER__URL": amqp_url,
            "BACKLANE_BROKER__MANAGEMENT_URL": management_url,
            "BACKLANE_DATABASE__URL": db_url,
            "BACKLANE_STORAGE__ROOT": str(workdir / "storage"),
            **BASE_ENV,
        },
    )
    if options.storage == "s3":
        from devtools.demo.storage import start_s3

        stack.env.update(start_s3(workdir, running))
    simulators = start_simulators(stack, [use for part in parts if (use := part.simulator()) is not None])
    for simulator in simulators:
        print(rendering.simulator_line(simulator))

    from backlane.db.migrate import upgrade  # here: alembic takes a while to import, the options need none of it

    upgrade(db_url)
    ctx = DemoContext(
        workdir=workdir,
        db=Database(db_url),
        db_url=db_url,
        storage=workdir / "storage",
        amqp_url=amqp_url,
        simulators={simulator.group: simulator.url for simulator in simulators},
        now=SystemClock().now(),
    )
    for part in parts:
        stack.env.update(part.environment(ctx))
    print(rendering.sample_data_line(db_url, [part.seed(ctx) for part in parts]))
    for line in rendering.not_seeded_lines(found.without_part):
        print(line)

    _start_processes(options, stack)
    print()
    _start_parts(parts, ctx)
    print()
    if watch(parts, ctx, stack, options.timeout) is None:
        return 1  # the database is kept, to look into
    code = _summary(parts, found, ctx)
    if options.stay:
        _stay(stack)
    ctx.db.dispose()
    if not options.keep:
        dispose(workdir, ("db",))
    return code


def _start_processes(options: DemoOptions, stack: Stack) -> None:
    """The queues, the worker, the clock and the dashboard; what a second terminal needs."""
    declare_queues(stack.env)
    stack.start_worker(options.processes, options.threads)
    stack.start_clock()
    print(
        f"worker ({options.processes} processes x {options.threads} threads) and clock started; logs in {stack.workdir}"
    )
    dashboard_url = start_dashboard(stack)
    print(
        f"dashboard: {dashboard_url}/  (every pipeline's items, health and failures with their reasons, the dead "
        "letters to requeue, Trigger now; loopback only)"
    )
    print("\nTo watch it from a second terminal (`backlane dead-letters list` works there too):")
    print("\n".join(rendering.environment_lines(stack.env)))


def _start_parts(parts: Sequence[DemoPart], ctx: DemoContext) -> None:
    """What each part announces once the worker runs, then the first discovers asked for at once."""
    for part in parts:
        for line in part.start(ctx):
            print(line)
    now = [name for part in parts for name in part.first_discover()]
    if now:
        ctx.trigger(now)
        print(
            f"asked for the first discover of {', '.join(now)} now (as `backlane trigger NAME` does) "
            "instead of waiting for the clock"
        )


def _summary(parts: Sequence[DemoPart], found: Parts, ctx: DemoContext) -> int:
    """Every part's result, the checks that prove it, and every failure explained. Exit status."""
    print()
    problems: list[str] = []
    for part in parts:
        outcome = part.outcome(ctx)
        print("\n".join(rendering.outcome_lines(part.name, outcome)))
        problems.extend(outcome.problems)
    for line in rendering.not_seeded_lines(found.without_part):
        print(line)
    failures = [failure for part in parts for failure in part.failures(ctx)]
    on_purpose = [said for part in parts if (said := part.on_purpose())]
    print("\n".join(rendering.failure_lines(failures, on_purpose)))
    if problems:
        print("\nPROBLEMS: " + "; ".join(problems))
        return 1
    return 0


def _stay(stack: Stack) -> None:
    """--stay: everything keeps running until Ctrl-C or a process ends."""
    print("\neverything keeps running; Ctrl-C stops it.", flush=True)
    try:
        while all(proc.alive for proc in stack.processes):
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping everything ...", flush=True)
