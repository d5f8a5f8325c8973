"""backlane's own per-message cost: a registered no-op pipeline against a plain Dramatiq no-op actor.

    python benchmarks/noop_overhead.py [N] [--rounds=3] [--processes=2] [--threads=8]
                                       [--variants=dramatiq,backlane,backlane-json,backlane-metrics,backlane-app]
                                       (also: backlane-broker, backlane-tracing)
                                       [--profile=DIR]

Every variant is a worker of P processes x T threads started by the dramatiq CLI; once
its consumers listen, the harness publishes N messages to its no-op actor in confirmed
batches and waits until the queue has none ready. Variants, interleaved round after round:

* dramatiq: ``dramatiq plain_dramatiq``, Dramatiq's own RabbitmqBroker and default
  middleware, actor ``plain_noop`` (what a user writes without backlane);
* backlane-broker: ``dramatiq _noop``, a plain ``@dramatiq.actor`` on backlane's broker,
  consumer and middleware, outside the registry (what backlane adds below the registry);
* backlane: ``dramatiq _noop_pipeline``, a pipeline registered with backlane
  (registry, run_item, outcome line, dead-lettering consumer, backlane's broker and
  middleware), metrics endpoint off;
* backlane-json: the same with ``BACKLANE_LOG_FORMAT=json`` (every log line, the outcome
  line of each message included, one JSON object);
* backlane-metrics: the same with the metrics endpoint on (Prometheus middleware and
  backlane's counters, as a production worker runs);
* backlane-app: ``dramatiq actors scheduler _noop_pipeline``: the same pipeline in a
  worker that also consumes every built-in pipeline's queues (idle), metrics on;
* backlane-tracing: the ``backlane`` variant with ``BACKLANE_TRACING__ENABLED=true``: a span per
  message (every one sampled, the SDK's default), batched and exported over OTLP/HTTP to a sink
  in this process that answers 200 (its CPU is not the worker's).

Worker CPU ms per message is /proc utime+stime of the worker's process tree from the
first publish until the queue is empty, per message. ``--profile=DIR`` runs
``py-spy record --threads`` (active samples) on the first worker process of each variant in
the last round and writes its collapsed stacks to DIR.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import _harness as h
import _profile
from dramatiq.message import Message

from devtools.infra.ports import free_port

VARIANTS = ("dramatiq", "backlane", "backlane-metrics", "backlane-app")
#: (dramatiq CLI modules, queue, actor name, metrics endpoint on)
SHAPES = {
    "dramatiq": (["plain_dramatiq"], "plain_noop", "plain_noop", False),
    "backlane-broker": (["_noop"], "bench_noop", "noop", False),
    "backlane": (["_noop_pipeline"], "noopbench", "process_noopbench", False),
    "backlane-json": (["_noop_pipeline"], "noopbench", "process_noopbench", False),
    "backlane-metrics": (["_noop_pipeline"], "noopbench", "process_noopbench", True),
    "backlane-app": (["actors", "scheduler", "_noop_pipeline"], "noopbench", "process_noopbench", True),
}
#: A variant's own settings, beside its shape's.
VARIANT_ENV = {"backlane-json": {"BACKLANE_LOG_FORMAT": "json"}}
SHAPES["backlane-tracing"] = SHAPES["backlane"]
PUBLISH_BATCH = 5_000


class _TraceSink(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that takes every export and keeps nothing."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


_sink: ThreadingHTTPServer | None = None


def trace_sink() -> str:
    """The OTLP/HTTP traces endpoint of this process's sink (started on first use)."""
    global _sink
    if _sink is None:
        _sink = ThreadingHTTPServer(("127.0.0.1", 0), _TraceSink)
        threading.Thread(target=_sink.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{_sink.server_address[1]}/v1/traces"


def variant_env(variant: str) -> dict[str, str]:
    """What a variant's worker gets on top of the stack's environment."""
    if variant == "backlane-tracing":
        return {"BACKLANE_TRACING__ENABLED": "true", "BACKLANE_TRACING__ENDPOINT": trace_sink()}
    return dict(VARIANT_ENV.get(variant, {}))


def publisher() -> Any:
    """A broker to publish with, for the node the environment names now: the application's own was
    built when _harness imported the actors, before this benchmark's RabbitMQ node existed."""
    from backlane.app import build_broker
    from backlane.settings import load_settings

    return build_broker(load_settings())


def write_thread_table(
    path: Path,
    variant: str,
    n: int,
    processes: int,
    before: dict[int, float],
    after: dict[int, float],
    roles: dict[int, str],
) -> None:
    """Worker CPU per message by thread role, one worker process (the profiled one)."""
    by_role = _profile.cpu_by_role(before, after, roles)
    # The worker processes share the messages about evenly: per message of this one.
    share = n / processes
    rows = [
        [role, len(cpus), f"{sum(cpus) * 1000 / share:.3f}"]
        for role, cpus in sorted(by_role.items(), key=lambda kv: -sum(kv[1]))
    ]
    path.write_text(
        h.table(f"{variant}: CPU by thread, one worker process", ["threads", "count", "CPU ms/msg"], rows) + "\n"
    )


def run(
    infra: h.Infra,
    db_url: str,
    variant: str,
    n: int,
    processes: int,
    threads: int,
    profile: Path | None,
    broker: Any,
) -> tuple[float, float]:
    """(messages/s, worker CPU ms per message)."""
    modules, queue, actor, metrics = SHAPES[variant]
    env = {"BACKLANE_WORKER__METRICS_PORT": str(free_port()) if metrics else "0", **variant_env(variant)}
    stack = infra.stack(variant, db_url, **env)
    queues = h.Queues(infra.amqp_url)
    spy: subprocess.Popen[bytes] | None = None
    with h.stopping(stack):
        argv = [sys.executable, "-m", "dramatiq", *modules, "--processes", str(processes), "--threads", str(threads)]
        worker = h.spawn(stack, f"{variant}-worker", argv)
        queues.wait_consumers(queue, processes, worker)
        time.sleep(1.0)
        assert worker.proc is not None
        children = sorted(p for p in h.process_tree(worker.proc.pid) if p != worker.proc.pid)
        if profile is not None:
            out = profile / f"{variant}.txt"
            spy = _profile.start(children[0], out)
        before = h.cpu_seconds(worker.proc.pid)
        threads_before = _profile.thread_cpu(children[0]) if profile is not None else {}
        started = time.monotonic()
        for start in range(0, n, PUBLISH_BATCH):
            batch = [
                Message(queue_name=queue, actor_name=actor, args=(i,), kwargs={}, options={})
                for i in range(start, min(n, start + PUBLISH_BATCH))
            ]
            broker.enqueue_many(batch)
        done = h.wait_for(lambda: queues.state(queue)[0] == 0, timeout=600, interval=0.01, procs=[worker])
        used = h.cpu_seconds(worker.proc.pid) - before
        if spy is not None and profile is not None:
            threads_after = _profile.thread_cpu(children[0])
            _profile.stop(spy)
            roles = _profile.thread_roles(profile / f"{variant}.txt")
            table = profile / f"{variant}-threads.md"
            write_thread_table(table, variant, n, processes, threads_before, threads_after, roles)
    queues.close()
    return n / (done - started), used * 1000 / n


def main() -> None:
    (n,) = h.sizes([20_000])[:1]
    rounds = int(h.option("rounds", "3"))
    processes = int(h.option("processes", str(h.PROCESSES)))
    threads = int(h.option("threads", str(h.THREADS)))
    variants = h.option("variants", ",".join(VARIANTS)).split(",")
    profile_dir = h.option("profile", "")
    profile = Path(profile_dir) if profile_dir else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[tuple[float, float, str]]] = {v: [] for v in variants}
    with h.Infra(with_postgres=False) as infra:
        db_url = infra.database("sqlite", "noop")  # the backlane workers check the schema at start
        os.environ.update(
            BACKLANE_BROKER__URL=infra.amqp_url, BACKLANE_WORKER__METRICS_PORT="0", BACKLANE_DATABASE__URL=db_url
        )
        broker = publisher()
        for r in range(rounds):
            for variant in variants:
                load = h.load()
                h.log(f"round {r + 1}/{rounds}: {variant}, {n:,} no-op messages (load {load}) ...")
                last = r == rounds - 1
                rate, cpu = run(infra, db_url, variant, n, processes, threads, profile if last else None, broker)
                h.log(f"  {rate:,.0f} msg/s, worker CPU {cpu:.3f} ms/msg")
                results[variant].append((rate, cpu, load))
    base = statistics.mean(c for _, c, _ in results[variants[0]])
    rows = []
    for variant in variants:
        runs = results[variant]
        mean_cpu = statistics.mean(c for _, c, _ in runs)
        rows.append(
            [
                variant,
                ", ".join(f"{r:,.0f}" for r, _, _ in runs),
                ", ".join(f"{c:.3f}" for _, c, _ in runs),
                f"{mean_cpu:.3f}",
                f"{mean_cpu / base:.2f}x",
                ", ".join(load for _, _, load in runs),
            ]
        )
    print(
        h.table(
            f"No-op messages: worker CPU per message, {n:,} per run, {rounds} interleaved rounds"
            f" ({processes} processes x {threads} threads; {h.machine()}; load at the end {h.load()})",
            [
                "variant",
                "msg/s per round",
                "worker CPU ms/msg per round",
                "mean CPU ms/msg",
                f"vs {variants[0]}",
                "load before each run",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
