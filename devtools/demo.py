"""``python -m devtools.demo`` (what ``scripts/demo`` runs): the whole system on one machine, watched live.

Starts (or finds) RabbitMQ, two simulators (the order API, failing a share of its
calls; and every other source: the catalog provider and the ERP, e-shop and
logistics sources, the product API, the vendor scrapers), a worker and the clock.
With its sample data it shows every pipeline at work:

* orders: half announced the way another service would (a raw OrderCreated on
  ``orders_inbox``), the rest found by the discover tick; then a check at the
  simulator that each order was placed exactly once;
* catalog: all 12 sections refreshed from the simulator, at most 3 at once and
  within the provider's 2 requests an hour;
* tracks: deleted tracks physically deleted with their stored objects (one with a
  key outside the storage directory fails, with its reason);
* exports: the product export written as CSV and JSON Lines;
* staging: batches handed to both vendors' scrapers, each registration within its
  own per-tick limit (one batch the vendor rejects fails, with its reason).

It explains every failed item with its reason and how to requeue it, says when a
pipeline waits for its next tick and for how long, runs the dashboard (``backlane
dashboard``) and prints its URL, and prints the environment a second terminal needs
to watch with ``backlane status --watch``. Options are
checked before anything starts; Ctrl-C stops everything cleanly (exit 130).
"""

from __future__ import annotations

import signal
import sys

if __name__ == "__main__":  # Ctrl-C while the libraries below load: exit quietly too (main() restores it)
    signal.signal(signal.SIGINT, lambda _signum, _frame: sys.exit(130))

import argparse
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pika
from dramatiq import Message
from sqlalchemy import func, select

from actors.catalog.models import CatalogSection
from actors.catalog.sections import SECTIONS
from actors.exports.models import Export, ExportRun
from actors.orders.models import Order
from actors.staging.models import StagingBatch
from actors.tracks.models import Track
from backlane.clients.storage import DirectoryStorage
from backlane.core.clock import SystemClock, as_utc
from backlane.db.engine import Database
from backlane.db.migrate import upgrade
from backlane.messaging.broker import DISCOVER_QUEUE
from backlane.operations.health import check_broker
from backlane.settings import get_settings
from contracts.orders import ORDER_CREATED_QUEUE, OrderCreated
from devtools.infra.ports import free_port, is_listening
from devtools.infra.rabbitmq import (
    MissingRabbitMQ,
    RabbitMQNode,
    RabbitMQStartError,
    find_rabbitmq_server,
    install_rabbitmq_server,
)
from devtools.sample import create_exports, create_orders, create_staging_batches, create_tracks
from devtools.stack import Stack

DEMO_DIR = Path(".backlane/demo")
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
#: Tracks due for deletion, tracks kept (not due), tracks whose key is outside storage.
TRACKS, KEPT_TRACKS, BROKEN_TRACKS = 20, 5, 1
#: Staging batches per registration (5 and 10 per tick: each needs two ticks), and rejected ones.
STAGING = {"staging_acme": 8, "staging_globex": 15}
#: A placed order whose row has not changed for this long is said to be waiting (for its lease to end).
STALLED_SECONDS = 30
#: Their registrations' default max_items: batches one tick claims.
TICK_LIMITS = {"staging_acme": 5, "staging_globex": 10}
REJECTED = {"staging_acme": 1}
#: The catalog provider's real limit, enforced by the simulator too.
CATALOG_LIMIT = "catalog=2/3600"
#: Pipelines whose first discover the demo asks for at once instead of waiting for the clock.
#: The dashboard's default port (BACKLANE_DASHBOARD__PORT); a free one when it is taken.
DASHBOARD_PORT = 8090
TRIGGERED = ("catalog", "tracks", "exports", "staging_acme", "staging_globex")


class DemoError(Exception):
    """The demo cannot go on; the message is one line saying why and what to do."""


@dataclass(frozen=True)
class DemoOptions:
    orders: int = 100
    failure_rate: float = 0.2
    processes: int = 2
    threads: int = 8
    keep: bool = False
    stay: bool = False
    timeout: float = 900.0


# -- options ------------------------------------------------------------------


def _whole(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"a whole number from {low} to {high}, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"a whole number from {low} to {high}, not {value}")
        return value

    return parse


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a share from 0 to 0.9, not {text!r}") from None
    if not 0 <= value <= 0.9:
        raise argparse.ArgumentTypeError(f"a share from 0 to 0.9 (e.g. 0.2 for 20%), not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of seconds, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a number of seconds above 0, not {value:g}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description=(
            "Run the whole system on this machine: RabbitMQ, the simulators, a worker and the clock,\n"
            "with sample data for every pipeline (orders, catalog, tracks, exports, staging), watched\n"
            "live until everything has settled. Ctrl-C stops everything."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--orders", type=_whole(1, 100_000), default=100, help="sample orders to place (default 100)")
    parser.add_argument(
        "--failure-rate",
        type=_rate,
        default=0.2,
        metavar="SHARE",
        help="share of the order API's calls that fail transiently (default 0.2)",
    )
    parser.add_argument("--processes", type=_whole(1, 16), default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=_whole(1, 64), default=8, help="threads per worker process (default 8)")
    parser.add_argument(
        "--timeout", type=_seconds, default=900.0, metavar="SECONDS", help="give up after this long (default 900)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the demo database afterwards (logs are kept anyway)")
    parser.add_argument(
        "--stay",
        action="store_true",
        help="keep everything running after the summary, until Ctrl-C, to try backlane commands on it",
    )
    return parser


def parse_options(argv: list[str] | None = None) -> DemoOptions:
    """The options, checked before anything starts (a mistake: usage line, exit status 2)."""
    args = build_parser().parse_args(argv)
    return DemoOptions(args.orders, args.failure_rate, args.processes, args.threads, args.keep, args.stay, args.timeout)


# -- starting things ----------------------------------------------------------


def amqp_reachable(url: str) -> bool:
    return check_broker(url)["health"] == "healthy"


@dataclass
class Running:
    """What the demo started, so that it is all stopped however the demo ends."""

    node: RabbitMQNode | None = None
    stack: Stack | None = None
    lock: Any = None

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop_all(timeout=20)
        if self.node is not None:
            self.node.stop()


def find_or_start_rabbitmq(workdir: Path, running: Running) -> tuple[str, str]:
    """(amqp url, management url) of the configured RabbitMQ, the one on localhost:5672, or a node
    started here (kept in ``running`` as soon as it exists, so Ctrl-C while it boots stops it)."""
    settings = get_settings()
    configured = "BACKLANE_BROKER__URL" in os.environ
    url = settings.broker.url.get_secret_value()
    if configured or amqp_reachable(DEFAULT_AMQP):
        if not amqp_reachable(url):
            raise DemoError(
                f"RabbitMQ at BACKLANE_BROKER__URL ({url.split('@')[-1]}) is not reachable: start it, "
                "or unset BACKLANE_BROKER__URL to let the demo start its own"
            )
        print(f"RabbitMQ: using the one at {url.split('@')[-1]}")
        return url, settings.broker.management_url
    if find_rabbitmq_server() is None:
        allowed = os.geteuid() == 0 or shutil.which("sudo") is not None
        print("RabbitMQ is not installed; installing the rabbitmq-server package ...", flush=True)
        if not install_rabbitmq_server(allow=allowed):
            raise DemoError(str(MissingRabbitMQ()))
    print("RabbitMQ: starting a private node (about 10 s) ...", flush=True)
    running.node = RabbitMQNode(workdir / "rabbitmq")
    try:
        running.node.start()
    except RabbitMQStartError as exc:
        raise DemoError(f"{str(exc).splitlines()[0]} (its logs: {running.node.log_dir})") from None
    return running.node.amqp_url, running.node.management_url


def _publish(amqp_url: str, bodies: list[tuple[str, bytes]]) -> None:
    """Publish (routing key, body) pairs, persistent and confirmed, as a service without Dramatiq would."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for routing_key, body in bodies:
            channel.basic_publish(
                "",
                routing_key,
                body,
                pika.BasicProperties(delivery_mode=2, content_type="application/json"),
                mandatory=True,
            )
    finally:
        connection.close()


def publish_raw_order_created(amqp_url: str, order_ids: list[int]) -> None:
    """Publish OrderCreated as a service without Dramatiq would: plain JSON bytes."""
    _publish(
        amqp_url,
        [(ORDER_CREATED_QUEUE, json.dumps(OrderCreated(version=1, order_id=i).envelope()).encode()) for i in order_ids],
    )


def trigger_discover(amqp_url: str, pipelines: tuple[str, ...] | list[str]) -> None:
    """What `backlane trigger NAME` does: a discover message for each pipeline, now."""
    _publish(
        amqp_url,
        [
            (
                DISCOVER_QUEUE,
                Message(
                    queue_name=DISCOVER_QUEUE, actor_name=f"discover_{name}", args=(), kwargs={}, options={}
                ).encode(),
            )
            for name in pipelines
        ],
    )


def _declare_queues(env: dict[str, str]) -> None:
    """Declare the queues as a deployment would, so the raw publish below can route."""
    result = subprocess.run(
        [sys.executable, "-m", "backlane.cli", "declare-queues"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise DemoError(f"`backlane declare-queues` failed: {result.stderr.strip()}")


# -- watching -----------------------------------------------------------------


def start_dashboard(stack: Stack) -> str:
    """``backlane dashboard`` on its default port (8090), or on a free one when that is taken."""
    port = DASHBOARD_PORT if not is_listening(DASHBOARD_PORT) else free_port()
    _, url = stack.start_dashboard(port, {"BACKLANE_DASHBOARD__REFRESH_SECONDS": "2"})
    return url


def _now() -> datetime:
    return datetime.now(UTC)


def _next_tick_in() -> int:
    """Seconds until the clock's next every-minute tick (periodiq ticks at second 0)."""
    return 60 - datetime.now().second


@dataclass
class Snapshot:
    orders: Counter[str]
    orders_in_flight: int
    catalog_ok: int
    catalog_running: int
    catalog_failed: int
    catalog_waiting: int
    catalog_due: int
    tracks_left: int
    tracks_failed: int
    exports_done: list[str]
    exports_failed: list[str]
    staging: dict[str, Counter[str]]
    staging_in_flight: dict[str, int]
    api: dict[str, Any] = field(default_factory=dict)
    #: Pending orders that an OrderCreated the demo published will bring in (not the tick).
    orders_announced_pending: int = 0
    #: Placed orders untouched for STALLED_SECONDS, and when the first of their leases ends.
    orders_stalled: int = 0
    stalled_lease_end: datetime | None = None


def snapshot(db: Database, sim_url: str, announced: tuple[int, int] = (0, -1)) -> Snapshot:
    """Where every pipeline stands; ``announced``: the id range of the orders announced by OrderCreated."""
    now = _now()

    def leased(value: datetime | None) -> bool:
        return value is not None and as_utc(value) > now

    with db.transaction() as session:
        orders = Counter(dict(session.execute(select(Order.status, func.count()).group_by(Order.status)).all()))  # type: ignore[arg-type]
        in_flight = sum(
            1
            for (lease,) in session.execute(
                select(Order.lease_until).where(Order.status == "pending", Order.lease_until.is_not(None))
            )
            if leased(lease)
        )
        stalled = [
            as_utc(lease)  # type: ignore[arg-type]  # leased() says it is set
            for lease, updated in session.execute(
                select(Order.lease_until, Order.updated_at).where(Order.status == "placed")
            )
            if leased(lease) and (now - as_utc(updated)).total_seconds() > STALLED_SECONDS
        ]
        announced_pending = session.scalar(
            select(func.count()).where(Order.status == "pending", Order.id.between(*announced))
        )
        sections = list(session.scalars(select(CatalogSection)))
        tracks = Counter(dict(session.execute(select(Track.status, func.count()).group_by(Track.status)).all()))  # type: ignore[arg-type]
        exports = list(session.scalars(select(Export)))
        failed_runs = {
            export_id
            for (export_id,) in session.execute(select(ExportRun.export_id).where(ExportRun.outcome == "failed"))
        }
        staging: dict[str, Counter[str]] = {name: Counter() for name in STAGING}
        staging_in_flight: dict[str, int] = dict.fromkeys(STAGING, 0)
        for processor, status, lease in session.execute(
            select(StagingBatch.processor, StagingBatch.status, StagingBatch.lease_until)
        ):
            staging.setdefault(processor, Counter())[status] += 1
            staging_in_flight[processor] = staging_in_flight.get(processor, 0) + leased(lease)
    ok = sum(1 for s in sections if s.last_success_at is not None)
    return Snapshot(
        orders=orders,
        orders_in_flight=in_flight,
        catalog_ok=ok,
        catalog_running=sum(1 for s in sections if leased(s.lease_until)),
        catalog_failed=sum(1 for s in sections if s.last_success_at is None and s.last_outcome == "failed"),
        catalog_waiting=sum(1 for s in sections if s.last_success_at is None and leased(s.hold_until)),
        catalog_due=len(SECTIONS) - ok,
        tracks_left=tracks.get("deleted", 0),
        tracks_failed=tracks.get("deletion_failed", 0),
        exports_done=[e.path for e in exports if e.last_success_at is not None],
        exports_failed=[e.path for e in exports if e.last_success_at is None and e.id in failed_runs],
        staging=staging,
        staging_in_flight=staging_in_flight,
        api=httpx.get(f"{sim_url}/_admin/stats", timeout=5).json(),
        orders_announced_pending=announced_pending or 0,
        orders_stalled=len(stalled),
        stalled_lease_end=min(stalled, default=None),
    )


def _settled(s: Snapshot, total_orders: int, exports: int) -> dict[str, bool]:
    return {
        "orders": s.orders.get("succeeded", 0) + s.orders.get("failed", 0) >= total_orders,
        "catalog": s.catalog_ok + s.catalog_failed >= len(SECTIONS),
        "tracks": s.tracks_left == 0,
        "exports": len(s.exports_done) + len(s.exports_failed) >= exports,
        "staging": all(
            counts.get("completed", 0) + counts.get("failed", 0) >= STAGING[name] + REJECTED.get(name, 0)
            for name, counts in s.staging.items()
        ),
    }


def _lines(s: Snapshot, total_orders: int, elapsed: float, waiting: list[str]) -> list[str]:
    o, api = s.orders, s.api["orders"]
    lines = [
        f"[{elapsed:4.0f}s] orders   pending {o.get('pending', 0):>4}  placed {o.get('placed', 0):>4}  "
        f"succeeded {o.get('succeeded', 0):>4}  failed {o.get('failed', 0):>3}  │ order API: {api['created']} created, "
        f"{api['replays']} replays, {s.api['failures']['transient']} transient errors",
        f"        catalog  {s.catalog_ok:>2}/{len(SECTIONS)} sections refreshed, {s.catalog_running} refreshing"
        + (f", {s.catalog_failed} failed" if s.catalog_failed else ""),
        f"        tracks   {TRACKS + BROKEN_TRACKS - s.tracks_left - s.tracks_failed:>2}/{TRACKS + BROKEN_TRACKS} due "
        f"tracks deleted with their objects, {s.tracks_failed} failed",
        f"        exports  {', '.join(s.exports_done) or 'none'} written"
        + (f"; failed: {', '.join(s.exports_failed)}" if s.exports_failed else ""),
        "        staging  "
        + "   ".join(
            f"{name.removeprefix('staging_')} {c.get('completed', 0)}/{STAGING[name] + REJECTED.get(name, 0)} completed"
            + (f", {c['failed']} failed" if c.get("failed") else "")
            for name, c in s.staging.items()
        ),
    ]
    lines.append(f"        waiting  {'; '.join(waiting)}" if waiting else "")
    return lines


def _waiting(s: Snapshot) -> list[str]:
    """What only the clock's next tick will pick up, and how long until it comes: pending items none
    of which is claimed, once every message that could bring them in has been handled."""
    tick = _next_tick_in()
    waits = []
    pending = s.orders.get("pending", 0)
    if pending and not s.orders_in_flight and not s.orders_announced_pending:
        waits.append(f"{pending} orders wait for the next discover tick in {tick} s")
    if s.orders_stalled and s.stalled_lease_end is not None:
        ends = max(0, round((s.stalled_lease_end - _now()).total_seconds()))
        waits.append(
            f"{s.orders_stalled} placed orders untouched for {STALLED_SECONDS} s: should their message be lost, "
            f"discover takes them again when their lease ends in {ends} s (BACKLANE_ORDERS__LEASE_SECONDS)"
        )
    for name, counts in s.staging.items():
        left, started = counts.get("pending", 0), sum(n for status, n in counts.items() if status != "pending")
        if left and started and not s.staging_in_flight.get(name):
            waits.append(f"{left} {name} batches wait for the next tick in {tick} s ({TICK_LIMITS[name]} per tick)")
    return waits


def changed(lines: list[str], before: list[str]) -> bool:
    """Whether the progress lines say something new (the elapsed time aside)."""
    return [line[8:] for line in lines] != [line[8:] for line in before]


def watch(
    db: Database,
    sim_url: str,
    total_orders: int,
    exports: int,
    stack: Stack,
    amqp_url: str,
    announced: tuple[int, int],
    timeout: float,
) -> Snapshot | None:
    """Show progress until every pipeline has settled; None when a process died or time ran out."""
    started = time.monotonic()
    interactive = sys.stdout.isatty()
    width = shutil.get_terminal_size((160, 24)).columns - 1
    explained_ticks = False
    seen_waiting: set[str] = set()
    shown: list[str] = []
    last_print = 0.0
    last_catalog_trigger = time.monotonic()
    explained_catalog = False
    while True:
        s = snapshot(db, sim_url, announced)
        # Said once it holds for two looks in a row (a discover may be claiming them right now).
        now_waiting = _waiting(s)
        waiting = [w for w in now_waiting if w.split()[1] in seen_waiting]
        seen_waiting = {w.split()[1] for w in now_waiting}
        lines = _lines(s, total_orders, time.monotonic() - started, waiting)
        if waiting and not explained_ticks:
            print(
                "        (the clock ticks every minute, BACKLANE_<PIPELINE>__TICK; a tick claims at most "
                "BACKLANE_<PIPELINE>__MAX_ITEMS items, the rest wait for the next one)",
                flush=True,
            )
            shown, explained_ticks = [], True
        if interactive:
            lines = [line if len(line) <= width else line[: width - 1] + "…" for line in lines]
            if shown:
                sys.stdout.write(f"\033[{len(shown)}F\033[J")
            print("\n".join(lines), flush=True)
            shown = lines
        elif not shown or (changed(lines, shown) and time.monotonic() - last_print > 5):
            print("\n".join(line for line in lines if line), flush=True)
            shown, last_print = lines, time.monotonic()
        for proc in stack.processes:
            if not proc.alive:
                print(f"\n{proc.name} exited unexpectedly (exit status {proc.proc.returncode if proc.proc else '?'}):")
                print(proc.log_tail())
                return None
        settled = _settled(s, total_orders, exports)
        if all(settled.values()):
            if not interactive and changed(lines, shown):
                print("\n".join(line for line in lines if line))
            return s
        # Catalog: 3 refreshes at a time; ask for the next ones as slots free up instead of
        # waiting a minute per round, as `backlane trigger catalog` would.
        free = s.catalog_running < 3 and s.catalog_due > s.catalog_running + s.catalog_waiting + s.catalog_failed
        if not settled["catalog"] and free and time.monotonic() - last_catalog_trigger > 2:
            if not explained_catalog and not interactive:
                print(
                    "        catalog refreshes 3 sections at a time (BACKLANE_CATALOG__MAX_CONCURRENT); the demo "
                    "asks for the next ones as slots free up (`backlane trigger catalog`)"
                )
            explained_catalog = True
            trigger_discover(amqp_url, ["catalog"])
            last_catalog_trigger = time.monotonic()
        if time.monotonic() - started > timeout:
            unsettled = ", ".join(name for name, done in settled.items() if not done)
            print(f"\nnot settled after {timeout:.0f} s: {unsettled}; see the logs in {stack.workdir}")
            return None
        time.sleep(1)


# -- the summary --------------------------------------------------------------


def _cut(text: str | None, limit: int = 160) -> str:
    text = " ".join((text or "no reason recorded").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failures(db: Database) -> list[tuple[str, str, str]]:
    """(queue, item, reason) of every item that failed for good."""
    found: list[tuple[str, str, str]] = []
    with db.transaction() as session:
        for order_id, reason in session.execute(select(Order.id, Order.failure_reason).where(Order.status == "failed")):
            found.append(("orders", f"order {order_id}", _cut(reason)))
        for track_id, reason in session.execute(
            select(Track.id, Track.failure_reason).where(Track.status == "deletion_failed")
        ):
            found.append(("tracks", f"track {track_id}", _cut(reason)))
        for batch_id, processor, reason in session.execute(
            select(StagingBatch.id, StagingBatch.processor, StagingBatch.reason).where(StagingBatch.status == "failed")
        ):
            found.append((processor, f"batch {batch_id}", _cut(reason)))
        for name, reason in session.execute(
            select(CatalogSection.name, CatalogSection.last_error).where(CatalogSection.last_outcome == "failed")
        ):
            found.append(("catalog", f"section {name}", _cut(reason)))
        for export_id, reason in session.execute(
            select(ExportRun.export_id, ExportRun.error).where(ExportRun.outcome == "failed")
        ):
            found.append(("exports", f"export {export_id}", _cut(reason)))
    return found


def summary(
    db: Database, s: Snapshot, sources_url: str, workdir: Path, storage: DirectoryStorage, kept_keys: list[str]
) -> int:
    """Every pipeline's result, the checks that prove it, and every failure explained. Exit status."""
    problems = []
    by_key = s.api["orders"]["by_key"]
    with db.transaction() as session:
        rows = session.execute(select(Order.request_id, Order.status)).all()
        sections = list(session.scalars(select(CatalogSection).order_by(CatalogSection.name)))
        remaining_tracks = list(session.scalars(select(Track)))
    twice = [rid for rid, _ in rows if by_key.get(rid, {}).get("creations", 0) > 1]
    placed = sum(1 for rid, _ in rows if by_key.get(rid, {}).get("creations", 0) == 1)
    succeeded = sum(1 for _, status in rows if status == "succeeded")
    print()
    print(
        f"orders:  all {len(rows)} settled: {succeeded} succeeded, {len(rows) - succeeded} failed; placed at the "
        f"order API exactly once: {placed}, twice: {len(twice)}; idempotent replays absorbed: "
        f"{s.api['orders']['replays']}"
    )
    if twice:
        problems.append(f"{len(twice)} orders placed twice")

    sources = httpx.get(f"{sources_url}/_admin/stats", timeout=5).json()
    rows_in = sum((sec.last_counts or {}).get("inserted", 0) for sec in sections)
    provider_calls = sum(n for key, n in sources["requests"].items() if key.startswith("catalog."))
    print(
        f"catalog: {s.catalog_ok}/{len(SECTIONS)} sections refreshed from the simulator ({rows_in} rows written), "
        f"at most 3 at once; the catalog provider answered {provider_calls} call(s) of its 2 an hour, "
        f"rate-limited {sum(sources['rate_limited'].values())}"
    )
    if s.catalog_ok < len(SECTIONS):
        problems.append(f"{len(SECTIONS) - s.catalog_ok} catalog sections not refreshed")

    gone = [
        t
        for t in range(TRACKS)
        if not storage.exists(f"audio/track-{t}.mp3") and not storage.exists(f"waveforms/track-{t}.json")
    ]
    kept = [k for k in kept_keys if storage.exists(k)]
    print(
        f"tracks:  {len(gone)} deleted tracks removed with their {2 * len(gone)} stored objects; "
        f"{KEPT_TRACKS} tracks not due kept with their {len(kept)} objects; {s.tracks_failed} failed"
    )
    if len(gone) != TRACKS or len(kept) != len(kept_keys):
        problems.append("track objects not as expected")
    if any(t.status == "deleted" for t in remaining_tracks):
        problems.append("tracks left undeleted")

    with db.transaction() as session:
        runs = session.execute(
            select(ExportRun.file_path, ExportRun.rows, ExportRun.pages).where(ExportRun.outcome == "succeeded")
        ).all()
    for file_path, products, pages in runs:
        file = Path(file_path or "")
        print(f"exports: {file} written: {products} products from {pages} pages of the product API")
        if not file.exists():
            problems.append(f"export file {file} missing")
    if len(runs) != len(s.exports_done) or not runs:
        problems.append("exports not written")

    vendors = sources.get("vendors", {})
    parts = []
    for name, counts in s.staging.items():
        vendor = name.removeprefix("staging_")
        stats = vendors.get(vendor, {})
        parts.append(
            f"{vendor} {counts.get('completed', 0)} completed, {counts.get('failed', 0)} failed "
            f"(scraped {stats.get('scraped', 0)} batches, {stats.get('replays', 0)} twice)"
        )
        if stats.get("replays"):
            problems.append(f"vendor {vendor} scraped a batch twice")
    print("staging: " + "; ".join(parts))

    failed = failures(db)
    if failed:
        print(f"\n{len(failed)} item(s) failed for good, each with its reason:")
        for queue, item, reason in failed:
            print(f"  {queue:<15} {item:<10} {reason}")
        queues = sorted({queue for queue, _, _ in failed})
        print(
            "Each is also a dead letter in its queue's .XQ with the same reason. See them, fix the cause, then put\n"
            "them back (with the environment printed above, in a second terminal; --stay keeps the demo running):\n"
            "  backlane dead-letters list"
        )
        for queue in queues:
            print(f"  backlane dead-letters requeue --all --queue {queue}")
        print("or on the dashboard's Dead letters page (Requeue, Requeue selected, Requeue all).")
        print("(The broken track and the rejected batch are in the sample data on purpose: neither can succeed.)")
    else:
        print("\nno item failed for good.")
    if problems:
        print("\nPROBLEMS: " + "; ".join(problems))
        return 1
    return 0


# -- the demo -----------------------------------------------------------------


def _environment_lines(env: dict[str, str]) -> list[str]:
    names = ("BACKLANE_BROKER__URL", "BACKLANE_BROKER__MANAGEMENT_URL", "BACKLANE_DATABASE__URL")
    exports = " ".join(f"{name}='{env[name]}'" for name in names)
    backlane = Path(sys.executable).parent / "backlane"
    try:
        shown = backlane.relative_to(Path.cwd())
    except ValueError:
        shown = backlane
    return [f"  export {exports}", f"  {shown} status --watch"]


def run_demo(options: DemoOptions) -> int:
    running = Running()
    try:
        return _run(options, running)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything ...", flush=True)
        return 130
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        running.stop()


def _lock(workdir: Path) -> Any:
    """One demo per folder: a second one would delete the first one's database under it."""
    import fcntl

    workdir.mkdir(parents=True, exist_ok=True)
    lock = (workdir / "demo.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        raise DemoError(
            f"another demo is running in this folder (pid {lock.read().strip() or '?'}); stop it first (Ctrl-C)"
        ) from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock  # held until this process ends


def _run(options: DemoOptions, running: Running) -> int:
    workdir = DEMO_DIR.resolve()
    running.lock = _lock(workdir)
    for part in ("db", "storage", "exports"):
        shutil.rmtree(workdir / part, ignore_errors=True)
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
            "BACKLANE_RETRIES__MIN_BACKOFF_MS": "500",
            "BACKLANE_RETRIES__MAX_BACKOFF_MS": "5000",
            "BACKLANE_ORDERS__STATUS_POLL_SECONDS": "1",
            "BACKLANE_WORKER__METRICS_PORT": "0",
            "BACKLANE_STORAGE__ROOT": str(workdir / "storage"),
            "BACKLANE_EXPORTS__OUTPUT_DIR": str(workdir / "exports"),
        },
    )
    _, orders_url = stack.start_simulator(
        None, "--failure-rate", str(options.failure_rate), "--lost-response-rate", "0.05", "--seed", "7"
    )
    _, sources_url = stack.start_simulator(None, "--rate-limit", CATALOG_LIMIT, "--seed", "7")
    stack.env.update(
        {
            "BACKLANE_ORDER_API__BASE_URL": orders_url,
            "BACKLANE_CATALOG__BASE_URL": sources_url,
            "BACKLANE_PRODUCT_API__BASE_URL": sources_url,
            "BACKLANE_STAGING_ACME__BASE_URL": sources_url,
            "BACKLANE_STAGING_GLOBEX__BASE_URL": sources_url,
        }
    )
    print(
        f"order API simulator: {orders_url}, failing {options.failure_rate:.0%} of calls transiently"
        " and losing 5% of its answers after placing the order"
    )
    print(
        f"sources simulator: {sources_url}: the catalog provider (2 requests an hour), the ERP, e-shop and "
        "logistics sources, the product API and the vendor scrapers"
    )

    upgrade(db_url)
    db = Database(db_url)
    now = SystemClock().now()
    ids = create_orders(db, options.orders, now)
    storage = DirectoryStorage(workdir / "storage")
    create_tracks(db, storage, TRACKS, now, kept=KEPT_TRACKS, broken=BROKEN_TRACKS)
    kept_keys = [
        k for t in range(TRACKS, TRACKS + KEPT_TRACKS) for k in (f"audio/track-{t}.mp3", f"waveforms/track-{t}.json")
    ]
    exports = create_exports(db, now)
    create_staging_batches(db, now, STAGING, rejected=REJECTED)
    print(
        f"sample data in {db_url}: {len(ids)} orders; 12 catalog sections to refresh; {TRACKS} deleted tracks "
        f"({2 * TRACKS} stored objects) due for deletion, {BROKEN_TRACKS} with a key outside storage, {KEPT_TRACKS} "
        f"kept; {len(exports)} product exports (CSV, JSON Lines); staging batches: "
        + ", ".join(f"{STAGING[n] + REJECTED.get(n, 0)} for {n.removeprefix('staging_')}" for n in STAGING)
        + " (one rejected by its vendor)"
    )

    _declare_queues(stack.env)
    stack.start_worker(options.processes, options.threads)
    stack.start_clock()
    print(
        f"worker ({options.processes} processes x {options.threads} threads) and clock started; logs in {stack.workdir}"
    )
    dashboard_url = start_dashboard(stack)
    print(
        f"dashboard: {dashboard_url}/  (every pipeline's items and failures with their reasons, the dead letters "
        "to requeue, catalog freshness, Trigger now; loopback only)"
    )
    print("\nTo watch it from a second terminal (`backlane dead-letters list` works there too):")
    print("\n".join(_environment_lines(stack.env)))
    print()

    half = ids[: len(ids) // 2]
    publish_raw_order_created(amqp_url, half)
    print(
        f"published {len(half)} OrderCreated messages to '{ORDER_CREATED_QUEUE}' as another service would; "
        f"the other {len(ids) - len(half)} orders wait for the clock's discover tick (every minute)"
    )
    trigger_discover(amqp_url, TRIGGERED)
    print(
        f"asked for the first discover of {', '.join(TRIGGERED)} now (as `backlane trigger NAME` does) "
        "instead of waiting for the clock"
    )
    print()
    announced = (min(half), max(half)) if half else (0, -1)
    final = watch(db, orders_url, len(ids), len(exports), stack, amqp_url, announced, options.timeout)
    if final is None:
        return 1
    code = summary(db, final, sources_url, workdir, storage, kept_keys)
    if options.stay:
        print("\neverything keeps running; Ctrl-C stops it.", flush=True)
        try:
            while all(proc.alive for proc in stack.processes):
                time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping everything ...", flush=True)
    db.dispose()
    if not options.keep:
        shutil.rmtree(workdir / "db", ignore_errors=True)
    return code


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)  # a mistake: usage and exit status 2, before anything starts
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return run_demo(options)


if __name__ == "__main__":
    sys.exit(main())
