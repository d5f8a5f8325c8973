"""The fault-injection harness: a real system, a fault, and an honest account of what came out.

One :class:`Infra` per suite run owns a private RabbitMQ node and a private
PostgreSQL server (both restartable on the same ports and data, which the
broker and database faults need). Each scenario gets a :class:`FaultRun`: a
fresh database on that server, its own simulator process, ``>= 2`` worker
processes (``dramatiq actors scheduler``), the clock (``periodiq scheduler``),
thousands of orders plus due tracks (with their objects in a storage
directory) and every catalog section in flight.

The run acts as the supervisor of the processes a scenario kills or stops on
purpose: it starts a replacement at once. A process that exits on its own is a
*lost* process: it is counted, and restarted so the rest of the run can still
be judged.

:meth:`FaultRun.account` then reads the outcome from the database, the
simulator's own counts and the dead-letter queues, never from the workers'
logs: every item settled or failed with its reason, none lost, no side effect
twice (the simulator's creations per idempotency key), every dead letter
matched by a failed row (or by a malformed message the scenario injected), no
process lost, and the seconds from the end of the fault to the last item
settling.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pika
from sqlalchemy import func, insert, select

from actors.catalog.models import CatalogSection
from actors.orders.models import Order
from actors.staging.models import StagingBatch
from actors.tracks.models import Track
from backlane.core.clock import as_utc
from backlane.db.engine import Database
from backlane.db.migrate import upgrade
from devtools.infra.postgres import PostgresNode
from devtools.infra.rabbitmq import RabbitMQNode
from devtools.sample import create_orders
from devtools.stack import ManagedProcess, Placement, Stack

#: Every catalog section (backlane.settings.CATALOG_SECTION_DEFAULTS).
SECTIONS = (
    "erp_stock",
    "eshop_stock",
    "stock_taking",
    "transport",
    "lots",
    "sales",
    "consumed_materials",
    "purchase_history",
    "attributes",
    "suppliers",
    "categories",
    "brands",
)

#: Queues whose dead letters the accounting reads.
#: The staging handler's two registrations, each scraping at its own vendor of the simulator.
VENDORS = {"staging_acme": "acme", "staging_globex": "globex"}
WORK_QUEUES = ("orders", "orders_inbox", "tracks", "catalog", "discover", *VENDORS)

MGMT_AUTH = ("guest", "guest")


@dataclass(frozen=True)
class Scale:
    """How big one scenario's system is."""

    name: str
    orders: int
    tracks: int
    #: Order API latency that stretches the run so a fault lands in its middle, ms.
    latency_ms: int
    #: Longest wait for everything to settle after the fault, seconds.
    settle_timeout: float
    #: Orders', tracks' and staging batches' lease: a lost message's item is claimed again after it, seconds.
    lease_seconds: int
    #: Staging batches per vendor: each scraped once at its vendor (the side effect a frozen
    #: worker woken after its lease would repeat without the fence).
    batches: int = 0


FULL = Scale("full", orders=2000, tracks=200, latency_ms=60, settle_timeout=420, lease_seconds=60, batches=150)
FAST = Scale("fast", orders=200, tracks=20, latency_ms=150, settle_timeout=180, lease_seconds=30, batches=20)


def base_env(scale: Scale) -> dict[str, str]:
    """What every process of a fault run shares, besides broker, database and URLs: fast retries,
    one discover claiming every due item, short leases, every catalog section due every 15 s."""
    env = {
        "BACKLANE_RETRIES__MIN_BACKOFF_MS": "100",
        "BACKLANE_RETRIES__MAX_BACKOFF_MS": "1000",
        "BACKLANE_RETRIES__MAX_RETRIES": "10",
        "BACKLANE_WORKER__METRICS_PORT": "0",
        "BACKLANE_BROKER__RECONNECT_TIMEOUT": "120",
        "BACKLANE_ORDERS__MAX_ITEMS": str(scale.orders * 2),
        "BACKLANE_ORDERS__LEASE_SECONDS": str(scale.lease_seconds),
        "BACKLANE_ORDERS__STATUS_POLL_SECONDS": "0.5",
        "BACKLANE_ORDERS__CREATED_GRACE_SECONDS": "10",
        "BACKLANE_ORDERS__CREATED_RECHECK_SECONDS": "0.5",
        "BACKLANE_TRACKS__TICK": "* * * * *",
        "BACKLANE_TRACKS__MAX_ITEMS": str(scale.tracks * 2),
        "BACKLANE_TRACKS__LEASE_SECONDS": str(scale.lease_seconds),
        "BACKLANE_CATALOG__LEASE_SECONDS": "120",
        "BACKLANE_CATALOG__REFRESH_TIME_LIMIT_SECONDS": "60",
        "BACKLANE_CATALOG__BUSY_RECHECK_SECONDS": "1",
        "BACKLANE_CATALOG__BREAKER_OPEN_SECONDS": "2",
        "BACKLANE_CATALOG__LIMITERS__CATALOG__CALLS": "100000",
        "BACKLANE_CATALOG__LIMITERS__CATEGORIES__CALLS": "100000",
        "BACKLANE_EXPORTS__ENABLED": "false",
    }
    for name in VENDORS:
        section = f"BACKLANE_{name.upper()}__"
        env[section + "ENABLED"] = "true" if scale.batches else "false"
        env[section + "MAX_ITEMS"] = str(max(scale.batches, 1) * 2)
        env[section + "LEASE_SECONDS"] = str(scale.lease_seconds)
        env[section + "TICK"] = "* * * * *"
    for section in SECTIONS:
        env[f"BACKLANE_CATALOG__SECTIONS__{section.upper()}__INTERVAL_MINUTES"] = "0.25"
    return env


class Infra:
    """The private RabbitMQ node and PostgreSQL server every scenario of a suite run shares."""

    def __init__(self, base_dir: Path | None = None) -> None:
        # Under /tmp: as root PostgreSQL runs as user postgres, which must reach its directory.
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="backlane-faults-", dir="/tmp"))
        self.base_dir.chmod(0o711)  # mkdtemp's 0700 would keep user postgres out
        self.rabbitmq = RabbitMQNode(self.base_dir / "rabbitmq")
        self.postgres = PostgresNode(self.base_dir / "postgres")

    #: BACKLANE_BROKER__QUEUE_TYPE of every process of a run.
    queue_type = "classic"

    def start(self) -> Infra:
        self.rabbitmq.start()
        self.postgres.start()
        return self

    def broker_url(self) -> str:
        """``BACKLANE_BROKER__URL`` of the run's processes."""
        return self.rabbitmq.amqp_url

    def amqp_url(self) -> str:
        """One node's URL, for the harness's own connections (publishing by hand, reading .XQ)."""
        return self.rabbitmq.amqp_url

    def management_url(self) -> str:
        return self.rabbitmq.management_url

    def place(self, kind: str, index: int, host: str = "") -> Placement | None:
        """Where the ``index``-th process of ``kind`` (worker, clock, simulator) runs: here."""
        return None

    def ensure_up(self) -> None:
        """A scenario that failed half-way may leave a server down: the next one needs both."""
        if not self.rabbitmq.is_running():
            self.rabbitmq.start()
        if not self.postgres.is_running():
            self.postgres.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.rabbitmq.stop(timeout=15)
        with contextlib.suppress(Exception):
            self.postgres.stop(timeout=15)
        shutil.rmtree(self.base_dir, ignore_errors=True)


@dataclass
class Outcome:
    """One scenario's line of the table."""

    fault: str
    items: int = 0
    #: Of ``items``, the orders, and of those the ones settled (placed exactly once) and lost.
    orders: int = 0
    orders_settled: int = 0
    orders_lost: int = 0
    settled: int = 0
    failed_with_reason: int = 0
    lost: int = 0
    twice: int = 0
    dead_letters_unaccounted: int = 0
    processes_lost: int = 0
    recover_seconds: float | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and not self.problems
            and self.lost == 0
            and self.twice == 0
            and self.dead_letters_unaccounted == 0
            and self.processes_lost == 0
            and self.recover_seconds is not None
        )

    def failures(self) -> list[str]:
        """Why the scenario fails, one line each (empty when it passes)."""
        out = [f"error: {self.error}"] if self.error else []
        if self.lost:
            out.append(f"{self.lost} item(s) lost (neither settled nor failed with a reason)")
        if self.twice:
            out.append(f"{self.twice} side effect(s) done twice")
        if self.dead_letters_unaccounted:
            out.append(f"{self.dead_letters_unaccounted} dead letter(s) without a failed row")
        if self.processes_lost:
            out.append(f"{self.processes_lost} process(es) exited on their own")
        if self.recover_seconds is None and not self.error:
            out.append("did not recover within the settle timeout")
        return out + self.problems


class FaultRun:
    """One scenario's system: fresh database, simulator, workers, clock, seeded items."""

    def __init__(
        self,
        infra: Infra,
        fault: str,
        scale: Scale,
        *,
        workers: int = 2,
        clocks: int = 1,
        threads: int = 8,
        env: dict[str, str] | None = None,
        sim: dict[str, Any] | None = None,
        kick: bool = True,
    ) -> None:
        self.infra = infra
        self.fault = fault
        self.scale = scale
        self.n_workers = workers
        self.n_clocks = clocks
        self.threads = threads
        self.extra_env = env or {}
        self.sim_config = {"latency_ms": scale.latency_ms, "order_settle_polls": 0, "seed": 7, **(sim or {})}
        #: Pipelines kicked with `backlane trigger` while waiting. kick=False leaves orders and tracks to
        #: the clock alone; the catalog is still kicked: discover starts at most max_concurrent (3)
        #: refreshes, so the 12 sections would need 4 one-minute ticks after every fault otherwise.
        staging = tuple(VENDORS) if scale.batches else ()
        self.kick_pipelines = ("orders", "tracks", "catalog", *staging) if kick else ("catalog",)
        slug = "".join(c if c.isalnum() else "-" for c in fault.lower()).strip("-")
        self.workdir = infra.base_dir / "runs" / f"{slug[:40]}-{uuid.uuid4().hex[:6]}"
        self.db_name = f"f_{uuid.uuid4().hex[:12]}"
        self.order_ids: list[int] = []
        self.track_ids: list[int] = []
        self.track_keys: dict[int, tuple[str, str]] = {}
        self.batch_ids: list[int] = []
        #: Batches whose vendor was called more than once (set by :meth:`account`).
        self.vendor_repeats = 0
        #: Message ids and raw-body markers of malformed messages the scenario injected on purpose.
        self.injected_ids: set[str] = set()
        self.injected_markers: set[str] = set()
        #: Processes the scenario killed or stopped: their exit is not a loss.
        self.expected_exits: set[int] = set()
        self.lost_processes: list[str] = []
        self.restarts = 0
        self.started_at = time.monotonic()
        self.fault_cleared: float | None = None
        self.fault_cleared_wall: datetime | None = None
        self.recovered_at: float | None = None
        self._last_kick = 0.0
        self.notes: list[str] = []
        self.problems: list[str] = []

    # -- set-up -------------------------------------------------------------

    def setup(self) -> FaultRun:
        self.infra.ensure_up()
        self.database_url = self.infra.postgres.create_database(self.db_name)
        upgrade(self.database_url)
        self.db = Database(self.database_url, pool_size=2)
        self.storage = self.workdir / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        env = {
            "BACKLANE_BROKER__URL": self.infra.broker_url(),
            "BACKLANE_BROKER__QUEUE_TYPE": self.infra.queue_type,
            "BACKLANE_BROKER__MANAGEMENT_URL": self.infra.management_url(),
            "BACKLANE_DATABASE__URL": self.database_url,
            "BACKLANE_STORAGE__ROOT": str(self.storage),
            **base_env(self.scale),
            **self.extra_env,
        }
        self.stack = Stack(self.workdir / "logs", env)
        self.simulator, self.sim_url = self.stack.start_simulator(on=self.infra.place("simulator", 0))
        self.stack.env["BACKLANE_ORDER_API__BASE_URL"] = self.sim_url
        self.stack.env["BACKLANE_CATALOG__BASE_URL"] = self.sim_url
        self.stack.env["BACKLANE_PRODUCT_API__BASE_URL"] = self.sim_url
        for name in VENDORS:
            self.stack.env[f"BACKLANE_{name.upper()}__BASE_URL"] = self.sim_url
        self.expected_exits.add(id(self.simulator))  # stopped by teardown only; checked separately
        self.configure_sim(**self.sim_config)
        result = self.cli("declare-queues")
        if result.returncode != 0:
            raise RuntimeError(f"declare-queues failed: {result.stderr}")
        self.purge_queues()
        self.order_ids = create_orders(self.db, self.scale.orders, datetime.now(UTC))
        self.seed_tracks(self.scale.tracks)
        self.seed_batches(self.scale.batches)
        return self

    def seed_batches(self, per_vendor: int) -> None:
        """``per_vendor`` new pending batches for each vendor (a soak adds some all along)."""
        now = datetime.now(UTC)
        rows = [
            {
                "processor": name,
                "payload": {"urls": [f"https://shop.example/{name}/{i}", f"https://shop.example/{name}/{i}/reviews"]},
                "status": "pending",
                "created_at": now,
                "updated_at": now,
            }
            for name in VENDORS
            for i in range(per_vendor)
        ]
        if rows:
            with self.db.transaction() as session:
                self.batch_ids += list(session.execute(insert(StagingBatch).returning(StagingBatch.id), rows).scalars())

    def seed_tracks(self, count: int) -> None:
        now = datetime.now(UTC)
        rows = []
        for i in range(count):
            audio, waveform = f"audio/{self.db_name}-{i}.mp3", f"waveforms/{self.db_name}-{i}.json"
            for key in (audio, waveform):
                path = self.storage / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"object " + key.encode())
            rows.append(
                {
                    "title": f"track {i}",
                    "status": "deleted",
                    "audio_key": audio,
                    "waveform_key": waveform,
                    "delete_after": now - timedelta(minutes=1),
                    "created_at": now - timedelta(days=30),
                    "updated_at": now,
                }
            )
        if not rows:
            return
        with self.db.transaction() as session:
            ids = list(session.execute(insert(Track).returning(Track.id), rows).scalars())
        self.track_ids = ids
        self.track_keys = {tid: (r["audio_key"], r["waveform_key"]) for tid, r in zip(ids, rows, strict=True)}

    def start(self) -> FaultRun:
        """Workers, then clocks (a clock sends every due discover when it starts), then a first kick."""
        for _ in range(self.n_workers):
            self.start_worker()
        for _ in range(self.n_clocks):
            self.start_clock()
        self.trigger()
        return self

    def start_worker(self, host: str = "") -> ManagedProcess:
        """A worker process; on a multi-host run on ``host``, or the next host in turn."""
        started = sum(1 for p in self.stack.processes if p.name.startswith("worker"))
        on = self.infra.place("worker", started, host)
        return self.stack.start_worker(processes=1, threads=self.threads, on=on)

    def start_clock(self, host: str = "") -> ManagedProcess:
        started = sum(1 for p in self.stack.processes if p.name.startswith("clock"))
        return self.stack.start_clock(on=self.infra.place("clock", started, host))

    # -- operating the system ------------------------------------------------

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "backlane.cli", *args],
            env={**os.environ, **self.stack.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def trigger(self, *pipelines: str) -> None:
        """`backlane trigger` for each pipeline, in one interpreter (one import of the app, not three)."""
        names = list(pipelines or self.kick_pipelines)
        code = "import sys\nfrom backlane.cli import main\nfor p in sys.argv[1:]:\n    main(['trigger', p])\n"
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                [sys.executable, "-c", code, *names],
                env={**os.environ, **self.stack.env},
                capture_output=True,
                timeout=60,
            )
        self._last_kick = time.monotonic()

    def configure_sim(self, **changes: Any) -> None:
        response = httpx.post(f"{self.sim_url}/_admin/config", json=changes, timeout=10)
        response.raise_for_status()

    def sim_stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.sim_url}/_admin/stats", timeout=30).json())

    def mgmt(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.infra.management_url()}{path}", auth=MGMT_AUTH, timeout=30, **kwargs)

    def purge_queues(self) -> None:
        for queue in self.mgmt("GET", "/api/queues").json():
            self.mgmt("DELETE", f"/api/queues/%2F/{queue['name']}/contents")

    def publish_raw(self, queue: str, body: bytes, message_id: str | None = None) -> None:
        """Publish bytes to a queue by hand, as a foreign service would (persistent, confirmed)."""
        connection = pika.BlockingConnection(pika.URLParameters(self.infra.amqp_url()))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            props = pika.BasicProperties(delivery_mode=2, content_type="application/json", message_id=message_id)
            channel.basic_publish("", queue, body, props, mandatory=True)
        finally:
            connection.close()

    def publish_many(self, queue: str, bodies: list[bytes]) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.infra.amqp_url()))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
            for body in bodies:
                channel.basic_publish("", queue, body, props, mandatory=True)
        finally:
            connection.close()

    # -- supervision -----------------------------------------------------------

    def workers(self) -> list[ManagedProcess]:
        return [p for p in self.stack.processes if p.name.startswith("worker") and id(p) not in self.expected_exits]

    def clocks(self) -> list[ManagedProcess]:
        return [p for p in self.stack.processes if p.name.startswith("clock") and id(p) not in self.expected_exits]

    def kill(self, proc: ManagedProcess, *, replace: bool = True) -> ManagedProcess | None:
        """SIGKILL a process group as a crash would; as its supervisor, start a replacement."""
        self.expected_exits.add(id(proc))
        proc.kill()
        return self._replace(proc) if replace else None

    def terminate(self, proc: ManagedProcess, *, replace: bool = True) -> ManagedProcess | None:
        """SIGTERM (graceful stop, as a deploy does); as its supervisor, start a replacement."""
        self.expected_exits.add(id(proc))
        proc.stop(timeout=60)
        return self._replace(proc) if replace else None

    def _replace(self, proc: ManagedProcess) -> ManagedProcess:
        self.restarts += 1
        if proc.name.startswith("clock"):
            return self.start_clock(proc.host)
        return self.start_worker(proc.host)

    def supervise(self) -> None:
        """A process that exited without being told to is lost: count it and restart it."""
        for proc in list(self.stack.processes):
            if id(proc) in self.expected_exits or proc.alive:
                continue
            self.expected_exits.add(id(proc))
            code = proc.proc.returncode if proc.proc is not None else None
            last = [line for line in proc.log_tail(60).splitlines() if line.strip()][-3:]
            self.lost_processes.append(f"{proc.name} exited ({code}): {' | '.join(last)[:400]}")
            if proc.name.startswith("simulator"):
                raise RuntimeError(f"the simulator died: {proc.log_tail()}")
            self._replace(proc)

    def sleep(self, seconds: float) -> None:
        """Wait while supervising."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.supervise()
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    # -- reading the outcome -----------------------------------------------------

    def order_states(self) -> dict[int, tuple[str, str | None]]:
        with self.db.transaction() as session:
            rows = session.execute(select(Order.id, Order.status, Order.failure_reason)).all()
        return {row.id: (row.status, row.failure_reason) for row in rows}

    def settled_orders(self) -> int:
        """Orders succeeded or failed (for "inject when a part has settled"); -1 if the database is away."""
        try:
            return sum(1 for status, _ in self.order_states().values() if status in ("succeeded", "failed"))
        except Exception:
            return -1

    def wait_settled_part(self, fraction: float, timeout: float = 120) -> None:
        """Wait until ``fraction`` of the orders settled: the fault then lands mid-run."""
        target = int(len(self.order_ids) * fraction)
        deadline = time.monotonic() + timeout
        while self.settled_orders() < target:
            if time.monotonic() > deadline:
                self.notes.append(f"only {self.settled_orders()} of {target} orders settled before the fault")
                return
            self.supervise()
            if time.monotonic() - self._last_kick > 15:
                self.trigger()
            time.sleep(0.3)
        settled = self.settled_orders()
        if settled >= len(self.order_ids):
            self.problems.append("the fault came after every order had settled: not a mid-run fault")

    def clear_fault(self) -> None:
        """Mark the moment the fault ends: recovery is timed from here."""
        self.fault_cleared = time.monotonic()
        self.fault_cleared_wall = datetime.now(UTC)

    def _pending(self) -> dict[str, int] | None:
        """Items not final yet by kind, or None if the database cannot be read."""
        try:
            orders = self.order_states()
            with self.db.transaction() as session:
                tracks = {row.id: row.status for row in session.execute(select(Track.id, Track.status))}
                sections = {row.name: row for row in session.scalars(select(CatalogSection))}
                batches = session.scalar(
                    select(func.count())
                    .select_from(StagingBatch)
                    .where(StagingBatch.status.in_(("pending", "processing")))
                )
        except Exception:
            return None
        since = self.fault_cleared_wall or datetime.now(UTC)
        return {
            "orders": sum(1 for status, _ in orders.values() if status in ("pending", "placed")),
            "tracks": sum(1 for tid in self.track_ids if tracks.get(tid) == "deleted")
            + sum(1 for tid in self.track_ids if tid not in tracks and self._objects_left(tid)),
            "sections": sum(1 for name in SECTIONS if not _section_final(sections.get(name), since)),
            "batches": int(batches or 0),
        }

    def wait_settled(self, timeout: float | None = None) -> None:
        """Wait (supervising, kicking discover every 10 s when the run does) until every item is final."""
        if self.fault_cleared is None:
            self.clear_fault()
        deadline = time.monotonic() + (timeout or self.scale.settle_timeout)
        while time.monotonic() < deadline:
            self.supervise()
            pending = self._pending()
            if pending is not None and not any(pending.values()):
                self.recovered_at = time.monotonic()
                return
            if time.monotonic() - self._last_kick > 10:
                self.trigger()
            time.sleep(1)
        self.notes.append(f"still not final after {timeout or self.scale.settle_timeout:.0f}s: {self._pending()}")

    def _objects_left(self, track_id: int) -> bool:
        return any((self.storage / key).exists() for key in self.track_keys.get(track_id, ()) if key)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every message in the work queues' .XQ, read without acking (they all go back)."""
        letters: list[dict[str, Any]] = []
        connection = pika.BlockingConnection(pika.URLParameters(self.infra.amqp_url()))
        try:
            channel = connection.channel()
            for queue in WORK_QUEUES:
                while True:
                    try:
                        method, _props, raw = channel.basic_get(f"{queue}.XQ", auto_ack=False)
                    except pika.exceptions.ChannelClosedByBroker:  # queue does not exist
                        channel = connection.channel()
                        break
                    if method is None:
                        break
                    try:
                        body = json.loads(raw)
                    except (ValueError, RecursionError):
                        body = None
                    if not isinstance(body, dict):  # a letter is the body as it came: any bytes
                        body = {"raw": raw.decode("utf-8", "replace")}
                    if _props.message_id and "message_id" not in body:
                        body["message_id"] = _props.message_id
                    letters.append({"queue": queue, "body": body, "text": raw.decode("utf-8", "replace")})
        finally:
            connection.close()  # unacked: every dead letter goes back to its queue
        return letters

    def account(self) -> Outcome:
        """The scenario's line of the table, from the database, the simulator and the queues."""
        out = Outcome(self.fault, notes=list(self.notes), problems=list(self.problems))
        self.supervise()
        for proc in self.stack.processes:
            if id(proc) not in self.expected_exits and not proc.alive:
                self.lost_processes.append(f"{proc.name} not running at the end")
        if not self.simulator.alive:
            out.problems.append("the simulator is not running")
        out.processes_lost = len(self.lost_processes)
        if self.lost_processes:
            out.notes.extend(self.lost_processes)
        if self.restarts:
            out.notes.append(f"the supervisor started {self.restarts} replacement process(es)")

        orders = self.order_states()
        sim = self.sim_stats()
        stats = sim["orders"]["by_key"]
        vendor_calls = {name: sim.get("vendors", {}).get(vendor, {}) for name, vendor in VENDORS.items()}
        with self.db.transaction() as session:
            keys = {row.id: row.request_id for row in session.execute(select(Order.id, Order.request_id))}
            track_rows = session.execute(select(Track.id, Track.status, Track.failure_reason))
            tracks = {row.id: (row.status, row.failure_reason) for row in track_rows}
            sections = {row.name: row for row in session.scalars(select(CatalogSection))}
            batch_rows = session.execute(select(StagingBatch.id, StagingBatch.status, StagingBatch.reason))
            batches = {row.id: (row.status, row.reason) for row in batch_rows}

        lost_examples: list[str] = []
        for oid, (status, reason) in orders.items():
            creations = stats.get(keys[oid], {}).get("creations", 0)
            out.items += 1
            out.orders += 1
            if creations > 1:
                out.twice += 1
            if status == "succeeded" and creations == 1:
                out.settled += 1
                out.orders_settled += 1
            elif status == "failed" and reason:
                out.failed_with_reason += 1
            else:
                out.lost += 1
                out.orders_lost += 1
                if len(lost_examples) < 3:
                    lost_examples.append(f"order {oid} {status} creations={creations}")
        for tid in self.track_ids:
            out.items += 1
            state = tracks.get(tid)
            if state is None and not self._objects_left(tid):
                out.settled += 1
            elif state is not None and state[0] == "deletion_failed" and state[1]:
                out.failed_with_reason += 1
            else:
                out.lost += 1
                if len(lost_examples) < 6:
                    lost_examples.append(f"track {tid} {state} objects_left={self._objects_left(tid)}")
        since = self.fault_cleared_wall or datetime.now(UTC)
        for name in SECTIONS:
            out.items += 1
            row = sections.get(name)
            if row is not None and row.last_success_at is not None and as_utc(row.last_success_at) >= since:
                out.settled += 1
            elif row is not None and row.last_outcome == "failed" and row.last_error:
                out.failed_with_reason += 1
            else:
                out.lost += 1
                if len(lost_examples) < 9:
                    lost_examples.append(f"section {name} {row.last_outcome if row else None}")
        for bid in self.batch_ids:
            out.items += 1
            status, reason = batches.get(bid, ("missing", None))
            if status == "completed":
                out.settled += 1
            elif status == "failed" and reason:
                out.failed_with_reason += 1
            else:
                out.lost += 1
                if len(lost_examples) < 12:
                    lost_examples.append(f"staging batch {bid} {status}")
        if self.batch_ids:
            # A batch is scraped at its vendor under one Idempotency-Key (the batch's), which the
            # vendor honours: a repeated call (a redelivery after a worker died mid-scrape) is
            # answered as a replay and scrapes nothing, so the vendor never scrapes a batch
            # twice. Scenarios where nothing is redelivered (a frozen worker woken after its
            # lease) also hold the repeated calls to zero: there the fence must keep the woken
            # worker from calling at all (see the freeze scenarios).
            scraped = sum(int(calls.get("scraped", 0)) for calls in vendor_calls.values())
            completed = sum(1 for bid in self.batch_ids if batches.get(bid, ("",))[0] == "completed")
            self.vendor_repeats = sum(int(calls.get("duplicates", 0)) for calls in vendor_calls.values())
            if scraped > len(self.batch_ids):  # a batch scraped under a second key: a side effect twice
                out.twice += scraped - len(self.batch_ids)
            out.notes.append(
                f"{len(self.batch_ids)} staging batches: {completed} completed, {scraped} scraped at their "
                f"vendors, {self.vendor_repeats} called again and answered as a replay"
            )
        if lost_examples:
            out.notes.append("not final: " + "; ".join(lost_examples))

        letters = self.dead_letters()
        unaccounted: dict[str, int] = {}
        sample: dict[str, str] = {}
        for letter in letters:
            why = self._unaccounted(letter, orders, tracks, sections, batches)
            if why is not None:
                unaccounted[why] = unaccounted.get(why, 0) + 1
                reason = ((letter["body"].get("options") or {}).get("dead_letter") or {}).get("reason", "")
                sample.setdefault(why, str(reason)[:160])
        out.dead_letters_unaccounted = sum(unaccounted.values())
        if letters:
            out.notes.append(f"{len(letters)} dead letter(s) in .XQ")
        for why, count in unaccounted.items():
            out.notes.append(f"{count} dead letter(s): {why} (e.g. {sample[why]!r})")
        if self.fault_cleared is not None and self.recovered_at is not None:
            out.recover_seconds = round(self.recovered_at - self.fault_cleared, 1)
        return out

    def _unaccounted(
        self,
        letter: dict[str, Any],
        orders: dict[int, tuple[str, str | None]],
        tracks: dict[int, tuple[str, str | None]],
        sections: dict[str, Any],
        batches: dict[int, tuple[str, str | None]],
    ) -> str | None:
        """None when a failed row (or a malformed message injected on purpose) accounts for it."""
        body = letter["body"]
        if str(body.get("message_id")) in self.injected_ids:
            return None
        options = body.get("options") or {}
        raw = str(options.get("raw_body", body.get("raw", ""))) + letter.get("text", "")
        if any(marker in raw for marker in self.injected_markers):
            return None
        actor = body.get("actor_name")
        args = body.get("args") or []
        item = args[0] if len(args) == 1 else None
        if actor == "process_orders" and isinstance(item, int):
            status, reason = orders.get(item, ("missing", None))
            return None if status == "failed" and reason else f"order {status}, not failed"
        if actor == "order_created" and isinstance(item, dict) and isinstance(item.get("order_id"), int):
            status, reason = orders.get(item["order_id"], ("missing", None))
            return None if status == "failed" and reason else f"OrderCreated for an order {status}"
        if actor == "process_tracks" and isinstance(item, int):
            state = tracks.get(item)
            return None if state and state[0] == "deletion_failed" and state[1] else "track not failed"
        if actor == "process_catalog" and isinstance(item, dict):
            row = sections.get(item.get("section"))
            return None if row is not None and row.last_outcome == "failed" else "catalog section not failed"
        staging = str(actor).removeprefix("process_")
        if staging in VENDORS and isinstance(item, int):
            status, reason = batches.get(item, ("missing", None))
            return None if status == "failed" and reason else f"staging batch {status}, not failed"
        return f"{letter['queue']}: {actor} has no item row"


def _section_final(row: Any, since: datetime) -> bool:
    if row is None:
        return False
    if row.last_success_at is not None and as_utc(row.last_success_at) >= since:
        return True
    return bool(row.last_outcome == "failed" and row.last_error)


def order_created_body(order_id: int, message_id: str | None = None) -> bytes:
    """An OrderCreated as the README's wire example shows it."""
    envelope = {
        "queue_name": "orders_inbox",
        "actor_name": "order_created",
        "args": [{"version": 1, "order_id": order_id}],
        "kwargs": {},
        "options": {},
        "message_id": message_id or str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }
    return json.dumps(envelope).encode()


def envelope(queue: str, actor: str, args: list[Any], message_id: str, **extra: Any) -> bytes:
    body = {
        "queue_name": queue,
        "actor_name": actor,
        "args": args,
        "kwargs": {},
        "options": {},
        "message_id": message_id,
        "message_timestamp": int(time.time() * 1000),
        **extra,
    }
    return json.dumps(body).encode()


@contextlib.contextmanager
def fault_run(infra: Infra, fault: str, scale: Scale, **kwargs: Any) -> Iterator[FaultRun]:
    """Set up a run, yield it, always tear it down (processes stopped, database dropped)."""
    run = FaultRun(infra, fault, scale, **kwargs)
    try:
        run.setup()
        yield run
    finally:
        with contextlib.suppress(Exception):
            run.stack.stop_all(timeout=15)
        with contextlib.suppress(Exception):
            run.db.dispose()
        with contextlib.suppress(Exception):
            infra.ensure_up()
            infra.postgres.drop_database(run.db_name)
        with contextlib.suppress(Exception):
            run.purge_queues()


Scenario = Callable[[Infra, Scale], Outcome]
