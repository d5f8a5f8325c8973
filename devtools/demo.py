"""``python -m devtools.demo`` (what ``scripts/demo`` runs): the whole pipeline on one machine, watched live.

Starts (or finds) RabbitMQ, the order API simulator failing a share of calls,
a worker and the clock; creates sample orders, announces half of them the way
another service would (a raw OrderCreated on ``orders_inbox``) and lets the
discover tick find the rest; shows progress until every order has settled, then
checks at the simulator that each was placed exactly once, and stops everything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pika
from sqlalchemy import func, select

from backlane.core.clock import SystemClock
from backlane.db.engine import Database
from backlane.db.migrate import upgrade
from backlane.db.models import Order
from backlane.operations.health import check_broker
from backlane.settings import get_settings
from contracts.orders import ORDER_CREATED_QUEUE, OrderCreated
from devtools.infra.rabbitmq import (
    MissingRabbitMQ,
    RabbitMQNode,
    find_rabbitmq_server,
    install_rabbitmq_server,
)
from devtools.sample import create_orders
from devtools.stack import Stack

DEMO_DIR = Path(".backlane/demo")
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"


@dataclass(frozen=True)
class DemoOptions:
    orders: int = 100
    failure_rate: float = 0.2
    processes: int = 2
    threads: int = 8
    keep: bool = False
    timeout: float = 900.0


def amqp_reachable(url: str) -> bool:
    return check_broker(url)["health"] == "healthy"


def find_or_start_rabbitmq(workdir: Path) -> tuple[str, str, RabbitMQNode | None]:
    """(amqp url, management url, node we started or None)."""
    settings = get_settings()
    configured = "BACKLANE_BROKER__URL" in os.environ
    url = settings.broker.url.get_secret_value()
    if configured or amqp_reachable(DEFAULT_AMQP):
        if not amqp_reachable(url):
            raise SystemExit(f"RabbitMQ at the configured BACKLANE_BROKER__URL is not reachable ({url.split('@')[-1]})")
        print(f"using the RabbitMQ at {url.split('@')[-1]}")
        return url, settings.broker.management_url, None
    if find_rabbitmq_server() is None:
        allowed = os.geteuid() == 0 or shutil.which("sudo") is not None
        print("RabbitMQ is not installed; installing the rabbitmq-server package ...")
        if not install_rabbitmq_server(allow=allowed):
            raise MissingRabbitMQ()
    print("starting a private RabbitMQ node ...", flush=True)
    node = RabbitMQNode(workdir / "rabbitmq")
    node.start()
    return node.amqp_url, node.management_url, node


def publish_raw_order_created(amqp_url: str, order_ids: list[int]) -> None:
    """Publish OrderCreated as a service without Dramatiq would: plain JSON bytes."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    for order_id in order_ids:
        body = json.dumps(OrderCreated(version=1, order_id=order_id).envelope())
        channel.basic_publish(
            "",
            ORDER_CREATED_QUEUE,
            body.encode(),
            pika.BasicProperties(delivery_mode=2, content_type="application/json"),
            mandatory=True,
        )
    connection.close()


def _declare_queues(env: dict[str, str]) -> None:
    """Declare the queues as a deployment would, so the raw publish below can route."""
    subprocess.run(
        [sys.executable, "-m", "backlane.cli", "declare-queues"],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _counts(db: Database) -> dict[str, int]:
    with db.transaction() as session:
        return dict(session.execute(select(Order.status, func.count()).group_by(Order.status)).all())  # type: ignore[arg-type]


def run_demo(options: DemoOptions) -> int:
    workdir = DEMO_DIR.resolve()
    if workdir.exists():
        shutil.rmtree(workdir / "db", ignore_errors=True)
    (workdir / "db").mkdir(parents=True, exist_ok=True)
    db_url = os.environ.get("BACKLANE_DATABASE__URL") or f"sqlite:///{workdir / 'db' / 'backlane.db'}"
    amqp_url, management_url, node = find_or_start_rabbitmq(workdir)
    stack = Stack(
        workdir / "logs",
        {
            "BACKLANE_BROKER__URL": amqp_url,
            "BACKLANE_BROKER__MANAGEMENT_URL": management_url,
            "BACKLANE_DATABASE__URL": db_url,
            "BACKLANE_RETRIES__MIN_BACKOFF_MS": "500",
            "BACKLANE_RETRIES__MAX_BACKOFF_MS": "5000",
            "BACKLANE_ORDERS__STATUS_POLL_SECONDS": "1",
            "BACKLANE_WORKER__METRICS_PORT": "0",
        },
    )
    try:
        print(f"RabbitMQ management UI: {management_url}  (guest / guest)")
        _, sim_url = stack.start_simulator(
            None, "--failure-rate", str(options.failure_rate), "--lost-response-rate", "0.05", "--seed", "7"
        )
        stack.env["BACKLANE_ORDER_API__BASE_URL"] = sim_url
        print(
            f"order API simulator: {sim_url}, failing {options.failure_rate:.0%} of calls transiently"
            " and losing 5% of its answers after placing the order"
        )
        upgrade(db_url)
        db = Database(db_url)
        ids = create_orders(db, options.orders, SystemClock().now())
        print(f"created {len(ids)} pending orders in {db_url}")
        _declare_queues(stack.env)
        stack.start_worker(options.processes, options.threads)
        stack.start_clock()
        print(
            f"worker ({options.processes} processes x {options.threads} threads) and clock started; "
            f"logs in {stack.workdir}"
        )
        half = ids[: len(ids) // 2]
        publish_raw_order_created(amqp_url, half)
        print(
            f"published {len(half)} OrderCreated messages to '{ORDER_CREATED_QUEUE}' as another service would;"
            " the every-minute discover tick finds the rest"
        )
        return _watch(db, sim_url, len(ids), stack, options.timeout)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping")
        return 130
    finally:
        stack.stop_all()
        if node is not None:
            node.stop()
        if not options.keep:
            shutil.rmtree(workdir / "db", ignore_errors=True)


def _watch(db: Database, sim_url: str, total: int, stack: Stack, timeout: float) -> int:
    started = time.monotonic()
    interactive = sys.stdout.isatty()
    while True:
        counts = _counts(db)
        stats = httpx.get(f"{sim_url}/_admin/stats", timeout=5).json()
        settled = counts.get("succeeded", 0) + counts.get("failed", 0)
        line = (
            f"[{time.monotonic() - started:5.0f}s] pending {counts.get('pending', 0):>4}  "
            f"placed {counts.get('placed', 0):>4}  succeeded {counts.get('succeeded', 0):>4}  "
            f"failed {counts.get('failed', 0):>4}   API: {stats['orders']['created']} created, "
            f"{stats['orders']['replays']} replays, {stats['failures']['transient']} transient errors"
        )
        print(("\r" + line) if interactive else line, end="" if interactive else "\n", flush=True)
        for proc in stack.processes:
            if not proc.alive:
                print(f"\n{proc.name} exited unexpectedly:\n{proc.log_tail()}")
                return 1
        if settled >= total:
            break
        if time.monotonic() - started > timeout:
            print(f"\nnot settled after {timeout:.0f}s; see the logs in {stack.workdir}")
            return 1
        time.sleep(1)
    print()
    return _verify(db, stats)


def _verify(db: Database, stats: dict) -> int:  # type: ignore[type-arg]
    by_key = stats["orders"]["by_key"]
    with db.transaction() as session:
        rows = session.execute(select(Order.request_id, Order.status)).all()
    twice = [rid for rid, _ in rows if by_key.get(rid, {}).get("creations", 0) > 1]
    placed = sum(1 for rid, _ in rows if by_key.get(rid, {}).get("creations", 0) == 1)
    succeeded = sum(1 for _, status in rows if status == "succeeded")
    print(f"all {len(rows)} orders settled: {succeeded} succeeded, {len(rows) - succeeded} failed")
    print(
        f"placed at the order API exactly once: {placed} orders; placed twice: {len(twice)}; "
        f"idempotent replays absorbed by the API: {stats['orders']['replays']}"
    )
    return 0 if not twice else 1


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--failure-rate", type=float, default=0.2)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the demo database and logs afterwards")
    args = parser.parse_args(argv)
    options = DemoOptions(args.orders, args.failure_rate, args.processes, args.threads, args.keep)
    return run_demo(options)


if __name__ == "__main__":
    sys.exit(main())
