"""End-to-end latency of one order, at 25 %, 50 % and 90 % of the measured capacity.

    python benchmarks/end_to_end_latency.py [--loads=25,50,90] [--duration=60] [--latency-ms=50]
        [--status-poll-seconds=1] [--capacity-orders=2000] [--tick-seconds=5]
        [--clock-load=50] [--clock-duration=180] [--paths=A,B,clock] [--processes=2] [--threads=8]
        [--worker-timeout-ms=1000]
        [--output=benchmarks/results/latency-e2e.md]

One private RabbitMQ node and PostgreSQL server; each phase gets a fresh migrated database,
a fresh order API simulator (``--latency-ms``, ``--order-settle-polls 1``: an order is still
pending at the GET right after its POST and final at the next one, so every order makes one
status poll through the delay queue) and fresh workers (``dramatiq actors scheduler``,
P processes x T threads, ``BACKLANE_LOG_FORMAT=json``, whose outcome lines give each
attempt's end and duration).

1. Capacity C: N pending orders, the harness publishes N ``process_orders`` messages (as
   compare.py's ``backlane`` system), timed from the first publish to the N-th settled row.
2. Path A, OrderCreated from MassTransit: an open-loop publisher thread, steady arrivals at
   R = load x C for ``--duration`` s: it inserts the pending order row (one autocommit
   INSERT), then publishes ``OrderCreated(RequestId)`` in MassTransit's envelope
   (``backlane.messaging.masstransit_send.published``: field for field what MassTransit 8's
   serializer writes) to the ``SharedContracts:OrderCreated`` exchange as its RabbitMQ
   transport does (persistent, content type and message id as properties, mandatory, with a
   publisher confirm). t0 = the publish.
3. Path B, found by discover: the same open-loop arrivals insert rows only; the harness
   sends the orders discover every ``--tick-seconds`` (what ``backlane trigger orders``
   sends). Then, at ``--clock-load``, a real ``periodiq scheduler`` with its 1-minute tick.
   t0 = the row's ``created_at``; also from the tick's send.

Per order, from the row and the worker's log (all on this machine's clock):
placed = the row's write of ``status = placed`` (after ``POST /orders`` and the first
``GET``; the simulator's ``/_admin/stats`` has no per-request timestamps, so this is read
from the row: ``lease_until - status_poll_seconds - lease_seconds``, the lease that write
set; the API created the order one GET, about ``--latency-ms``, before it);
settled = the row's ``settled_at``. The log's outcome lines split the time into the inbox
hop, the wait in the orders queue, the attempts and the status poll's wait in the delay
queue.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _harness as h

#: The simulator: pending at the GET right after the POST, final at the next GET.
SETTLE_POLLS = 1
#: Orders' lease, set explicitly: the placed write's time is read back from it.
LEASE_SECONDS = 600.0
#: Most orders one tick claims, set explicitly: the default (500) would cap path B at
#: 500 orders per tick (8 orders/s with the 1-minute clock).
MAX_ITEMS = 20_000
#: The pipelines other than orders, off so the clock's ticks do only the orders' work.
OTHER_PIPELINES = (
    "catalog",
    "cleanup",
    "exports",
    "product_photos",
    "delivery_photos",
    "staging_acme",
    "staging_globex",
    "tracks",
)
PUBLISH_BATCH = 2_000
PERCENTILES = (0.50, 0.95, 0.99)


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` quantile of ``values`` (0 <= share <= 1), linearly interpolated between the
    two nearest ranks (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: Sequence[float]) -> str:
    """``p50 / p95 / p99`` in milliseconds (seconds past 10 s), for a table cell."""
    if not values:
        return "n/a"
    return " / ".join(_duration(percentile(values, q)) for q in PERCENTILES)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if abs(seconds) >= 10 else f"{seconds * 1000:.0f} ms"


# -- the open-loop arrivals --------------------------------------------------------------------


@dataclass
class Arrivals:
    """Steady arrivals at ``rate`` per second for ``duration`` s, each running ``action(i)`` in
    one thread of the harness at its scheduled time (late ones run at once: the loop is open,
    it never waits for the system)."""

    rate: float
    duration: float
    action: Callable[[int], None]
    sent: int = 0
    worst_lag: float = 0.0
    elapsed: float = 0.0
    error: BaseException | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> Arrivals:
        self._thread = threading.Thread(target=self._run, name="arrivals", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        try:
            while True:
                due = started + self.sent / self.rate
                if due - started >= self.duration:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                else:
                    self.worst_lag = max(self.worst_lag, -wait)
                self.action(self.sent)
                self.sent += 1
        except BaseException as exc:  # reported by join()
            self.error = exc
        self.elapsed = time.monotonic() - started

    def join(self, procs: Sequence[Any] = ()) -> None:
        assert self._thread is not None
        while self._thread.is_alive():
            self._thread.join(0.5)
            for proc in procs:
                if not proc.alive:
                    raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        if self.error is not None:
            raise RuntimeError(f"the arrivals thread failed: {self.error!r}") from self.error

    @property
    def achieved(self) -> float:
        return self.sent / self.elapsed if self.elapsed else 0.0


class OrderWriter:
    """Inserts one pending order per call (one autocommit INSERT, as a service writing its own
    row would), and, for path A, publishes its OrderCreated as a MassTransit service does."""

    def __init__(self, db: Any, amqp_url: str | None) -> None:
        import pika
        from sqlalchemy import insert

        from actors.orders.models import Order

        self.db = db
        self.statement = insert(Order)
        self.created: dict[str, float] = {}  # request id -> committed (harness clock)
        self.published: dict[str, float] = {}  # request id -> t0, the publish
        self.channel = None
        if amqp_url is not None:
            self.connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
            self.channel = self.connection.channel()
            self.channel.confirm_delivery()

    def __call__(self, i: int) -> None:
        request_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        row = {
            "request_id": request_id,
            "customer": f"customer-{i % 97}",
            "payload": {"items": [{"sku": f"SKU-{i % 13}", "quantity": 1 + i % 3}]},
            "status": "pending",
            "created_at": now,
            "updated_at": now,
        }
        with self.db.statement() as connection:
            connection.execute(self.statement, row)
        self.created[request_id] = time.time()
        if self.channel is not None:
            self._publish(request_id)

    def _publish(self, request_id: str) -> None:
        import pika

        from backlane.messaging import masstransit_send
        from contracts.orders import ORDER_CREATED_MESSAGE_TYPE

        message_id = str(uuid.uuid4())
        properties, body = masstransit_send.published(
            {"requestId": request_id},
            ORDER_CREATED_MESSAGE_TYPE,
            message_id=message_id,
            conversation_id=str(uuid.uuid4()),
            source_address="rabbitmq://localhost/shop01_OrdersApi_bus_latency?temporary=true",
            sent=datetime.now(UTC),
            host=_DOTNET_HOST,
        )
        t0 = time.time()
        assert self.channel is not None
        self.channel.basic_publish(
            ORDER_CREATED_MESSAGE_TYPE, "", body, pika.BasicProperties(**properties), mandatory=True
        )
        self.published[request_id] = t0

    def close(self) -> None:
        if self.channel is not None:
            self.connection.close()


def _dotnet_host() -> Any:
    from backlane.messaging.masstransit_send import HostInfo

    return HostInfo(
        machine_name="shop01",
        process_name="OrdersApi",
        process_id=4711,
        assembly="OrdersApi",
        assembly_version="1.0.0.0",
        framework_version="8.0.1",
        mass_transit_version="8.1.3.0",
        operating_system_version="Unix 6.1.0.17",
    )


_DOTNET_HOST: Any = None


# -- what the worker's log and the rows say -----------------------------------------------------

_DISCOVER = re.compile(r"^discover orders: enqueued (\d+) item\(s\) in ([0-9.]+) ms$")


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


@dataclass
class WorkerLog:
    """Outcome lines by order id (process_orders) and by request id (the inbox), each
    ``(start, end, outcome)``; discover runs as ``(start, enqueued)``."""

    attempts: dict[int, list[tuple[float, float, str]]] = field(default_factory=dict)
    inbox: dict[str, tuple[float, float, str]] = field(default_factory=dict)
    discovers: list[tuple[float, int]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> WorkerLog:
        log = cls()
        for line in path.read_text(errors="replace").splitlines():
            start = line.find("{")
            if start < 0:
                continue
            try:
                entry = json.loads(line[start:])
            except ValueError:
                continue
            if not isinstance(entry, dict) or "time" not in entry:
                continue
            end = _stamp(entry["time"])
            if "outcome" in entry:
                began = end - float(entry.get("duration_ms", 0)) / 1000
                item, outcome = entry.get("item"), str(entry["outcome"])
                if entry.get("pipeline") == "orders" and isinstance(item, int):
                    log.attempts.setdefault(item, []).append((began, end, outcome))
                elif isinstance(item, dict) and "request_id" in item:
                    log.inbox[str(item["request_id"])] = (began, end, outcome)
                continue
            found = _DISCOVER.match(str(entry.get("message", "")))
            if found:
                log.discovers.append((end - float(found.group(2)) / 1000, int(found.group(1))))
        for lines in log.attempts.values():
            lines.sort()
        log.discovers.sort()
        return log


@dataclass
class Order:
    """One order's moments, epoch seconds."""

    request_id: str
    t0: float
    placed: float
    settled: float
    created: float
    attempts: list[tuple[float, float, str]]
    inbox: tuple[float, float, str] | None = None
    tick: float | None = None


def orders_of(db: Any, log: WorkerLog, t0: dict[str, float] | None, poll: float) -> list[Order]:
    """Every settled order of the phase; t0 is the publish (path A) or the row's created_at."""
    from sqlalchemy import select

    from actors.orders.models import Order as Row

    def epoch(moment: datetime) -> float:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()

    columns = (Row.id, Row.request_id, Row.created_at, Row.lease_until, Row.settled_at, Row.status)
    with db.transaction() as session:
        rows = session.execute(select(*columns).where(Row.settled_at.is_not(None))).all()
    found = []
    for order_id, request_id, created, lease_until, settled, _status in rows:
        created_s = epoch(created)
        found.append(
            Order(
                request_id,
                t0[request_id] if t0 is not None else created_s,
                epoch(lease_until) - poll - LEASE_SECONDS,
                epoch(settled),
                created_s,
                log.attempts.get(order_id, []),
                log.inbox.get(request_id),
            )
        )
    return found


def attribute_ticks(orders: list[Order], log: WorkerLog, sends: Callable[[float], float]) -> None:
    """Each order's tick: the first discover run that started after the row was created (a run
    claims every row committed before its claim query), or the run before it when the order's
    work started before that one (its claim query ran just after the row's commit). ``sends``
    maps a discover run's start to its tick's send."""
    starts = [start for start, _ in log.discovers]
    for order in orders:
        if not order.attempts or not starts:
            continue
        work = order.attempts[0][0]
        after = next((i for i, s in enumerate(starts) if s >= order.created), len(starts))
        index = after if after < len(starts) and starts[after] <= work else after - 1
        if index >= 0:
            order.tick = sends(starts[index])


# -- phases -----------------------------------------------------------------------------------


@dataclass
class Settings:
    processes: int
    threads: int
    latency_ms: float
    poll: float
    #: Dramatiq's worker timeout (``dramatiq_worker_timeout``), ms; None: its default (1000).
    worker_timeout_ms: int | None = None

    def env(self) -> dict[str, str]:
        return {
            **({"dramatiq_worker_timeout": str(self.worker_timeout_ms)} if self.worker_timeout_ms else {}),
            "BACKLANE_ORDERS__STATUS_POLL_SECONDS": str(self.poll),
            "BACKLANE_ORDERS__LEASE_SECONDS": str(LEASE_SECONDS),
            "BACKLANE_ORDERS__MAX_ITEMS": str(MAX_ITEMS),
            # Each thread holds at most one connection; more threads than the default pool need more.
            "BACKLANE_DATABASE__POOL_SIZE": str(max(10, self.threads)),
            "BACKLANE_LOG_FORMAT": "json",
            **{f"BACKLANE_{name.upper()}__ENABLED": "false" for name in OTHER_PIPELINES},
        }

    def simulator(self) -> tuple[str, ...]:
        return ("--order-settle-polls", str(SETTLE_POLLS), "--latency-ms", str(self.latency_ms))


def started(infra: h.Infra, name: str, s: Settings) -> tuple[Any, Any, Any, Any]:
    """A fresh database, simulator and worker: (db, stack, worker, queues)."""
    from backlane.db.engine import Database
    from contracts.orders import ORDER_CREATED_QUEUE

    db_url = infra.database("postgresql", name)
    db = Database(db_url)
    stack = infra.stack(name, db_url, **s.env())
    h.start_simulator(stack, *s.simulator())
    worker = stack.start_worker(s.processes, s.threads)
    queues = h.Queues(infra.amqp_url)
    for queue in ("orders", ORDER_CREATED_QUEUE, "discover"):
        queues.wait_consumers(queue, s.processes, worker, timeout=120)
    time.sleep(1.0)  # every thread of every process consuming
    return db, stack, worker, queues


def capacity(infra: h.Infra, s: Settings, n: int) -> float:
    """Settled orders/s for N orders published at once to the workers (compare.py's backlane)."""
    from dramatiq.message import Message

    import scheduler  # backlane's broker publishes the Dramatiq messages in confirmed batches
    from devtools.sample import create_orders

    db, stack, worker, queues = started(infra, "e2e_capacity", s)
    with h.stopping(stack):
        ids = create_orders(db, n, datetime.now(UTC))
        begin = time.monotonic()
        for first in range(0, n, PUBLISH_BATCH):
            batch: list[Message[Any]] = [
                Message(queue_name="orders", actor_name="process_orders", args=(i,), kwargs={}, options={})
                for i in ids[first : first + PUBLISH_BATCH]
            ]
            scheduler.broker.enqueue_many(batch)
        done = h.wait_for(lambda: h.settled(db) >= n, timeout=1800, interval=0.1, procs=[worker])
    queues.close()
    db.dispose()
    return n / (done - begin)


def capacity_inbox(infra: h.Infra, s: Settings, n: int) -> float:
    """Path A's own capacity: N pending orders, their N OrderCreated published at once in
    MassTransit's envelope (one confirm each, as above), first publish to the N-th settled row."""
    from sqlalchemy import select

    from actors.orders.models import Order as Row
    from devtools.sample import create_orders

    db, stack, worker, queues = started(infra, "e2e_capacity_inbox", s)
    with h.stopping(stack):
        create_orders(db, n, datetime.now(UTC))
        with db.transaction() as session:
            request_ids = list(session.scalars(select(Row.request_id)))
        writer = OrderWriter(db, infra.amqp_url)
        begin = time.monotonic()
        for request_id in request_ids:
            writer._publish(request_id)
        done = h.wait_for(lambda: h.settled(db) >= n, timeout=1800, interval=0.1, procs=[worker])
        writer.close()
    queues.close()
    db.dispose()
    return n / (done - begin)


@dataclass
class Phase:
    path: str
    load: str
    target: float
    achieved: float
    worst_lag: float
    orders: list[Order]
    expected: int
    machine_load: str


def run_phase(
    infra: h.Infra,
    s: Settings,
    path: str,
    label: str,
    rate: float,
    duration: float,
    *,
    tick_seconds: float = 0.0,
    clock: bool = False,
) -> Phase:
    """One load on one path: arrivals for ``duration`` s, then until every order is settled."""
    from backlane.core.registry import REGISTRY

    machine_load = h.load()
    name = f"e2e_{path.lower()}_{label}".replace("%", "").replace("-", "_").replace(".", "_")
    db, stack, worker, queues = started(infra, name, s)
    ticks: list[float] = []
    with h.stopping(stack):
        procs = [worker]
        if clock:
            procs.append(stack.start_clock())
        writer = OrderWriter(db, infra.amqp_url if path == "A" else None)
        arrivals = Arrivals(rate, duration, writer).start()
        stop_ticks = threading.Event()

        def tick_every() -> None:
            discover = REGISTRY.get("orders").discover_actor
            while not stop_ticks.wait(tick_seconds):
                ticks.append(time.time())
                discover.send()

        ticker = threading.Thread(target=tick_every, daemon=True) if tick_seconds else None
        if ticker is not None:
            ticker.start()
        arrivals.join(procs)
        expected = arrivals.sent
        # Every order settled: in path B up to one more tick, then the drain and the poll.
        wait = 120 + tick_seconds + (120 if clock else 0)
        h.wait_for(lambda: h.settled(db) >= expected, timeout=wait, interval=0.2, procs=procs)
        stop_ticks.set()
        writer.close()
    queues.close()
    log = WorkerLog.read(worker.log_path)
    orders = orders_of(db, log, writer.published if path == "A" else None, s.poll)
    db.dispose()
    if path != "A":
        if clock:  # periodiq sends at the top of each minute
            attribute_ticks(orders, log, lambda start: math.floor(start / 60) * 60)
        else:
            attribute_ticks(orders, log, lambda start: max((t for t in ticks if t <= start), default=start))
    return Phase(path, label, rate, arrivals.achieved, arrivals.worst_lag, orders, expected, machine_load)


# -- the tables -------------------------------------------------------------------------------


def latency_rows(phases: Sequence[Phase]) -> list[list[Any]]:
    rows = []
    for p in phases:
        o = p.orders
        from_tick = [x for x in o if x.tick is not None]
        rows.append(
            [
                p.path,
                p.load,
                f"{p.target:.1f} / {p.achieved:.1f}",
                f"{len(o):,} / {p.expected:,}",
                spread([x.placed - x.t0 for x in o]),
                spread([x.settled - x.t0 for x in o]),
                spread([x.placed - x.tick for x in from_tick]) if p.path != "A" else "",
                spread([x.settled - x.tick for x in from_tick]) if p.path != "A" else "",
                f"{p.worst_lag * 1000:.0f} ms",
                p.machine_load,
            ]
        )
    return rows


def segments(order: Order, poll_base: float) -> dict[str, float] | None:
    """Where one order's time went, from its row and its outcome lines (None: lines missing)."""
    if len(order.attempts) < 2:
        return None
    (work, _, _), (poll, _, _) = order.attempts[0], order.attempts[-1]
    parts: dict[str, float] = {}
    if order.inbox is not None:
        inbox_start, inbox_end, _ = order.inbox
        parts["publish → inbox actor starts"] = inbox_start - order.t0
        parts["inbox actor (look up, claim, send)"] = inbox_end - inbox_start
        parts["inbox sent → order actor starts (orders queue)"] = work - inbox_end
    elif order.tick is not None:
        parts["created → tick sent"] = order.tick - order.t0
        parts["tick sent → order actor starts (discover, orders queue)"] = work - order.tick
    else:
        parts["created → order actor starts"] = work - order.t0
    parts["attempt 1: load, POST, GET, placed write"] = order.placed - work
    parts["placed → status poll starts (delay queue)"] = poll - order.placed
    parts[f"  of which beyond status_poll_seconds={poll_base:g}"] = poll - order.placed - poll_base
    parts["attempt 2: GET, settled write"] = order.settled - poll
    return parts


def breakdown_rows(phases: Sequence[Phase], poll: float) -> tuple[list[str], list[list[Any]]]:
    rows: list[list[Any]] = []
    names: list[str] = []
    per_phase: list[dict[str, list[float]]] = []
    for p in phases:
        collected: dict[str, list[float]] = {}
        for order in p.orders:
            parts = segments(order, poll)
            for key, value in (parts or {}).items():
                collected.setdefault(key, []).append(value)
                if key not in names:
                    names.append(key)
        per_phase.append(collected)
    headers = ["segment (p50 / p95 / p99)", *[f"{p.path} {p.load}" for p in phases]]
    for key in names:
        rows.append([key, *[spread(c[key]) if key in c else "" for c in per_phase]])
    return headers, rows


def main() -> None:
    global _DOTNET_HOST
    loads = [float(x) for x in h.option("loads", "25,50,90").split(",")]
    duration = float(h.option("duration", "60"))
    s = Settings(
        processes=int(h.option("processes", str(h.PROCESSES))),
        threads=int(h.option("threads", str(h.THREADS))),
        latency_ms=float(h.option("latency-ms", "50")),
        poll=float(h.option("status-poll-seconds", "1")),
        worker_timeout_ms=int(h.option("worker-timeout-ms", "0")) or None,
    )
    n = int(h.option("capacity-orders", "2000"))
    tick_seconds = float(h.option("tick-seconds", "5"))
    clock_load = float(h.option("clock-load", "50"))
    clock_duration = float(h.option("clock-duration", "180"))
    paths = h.option("paths", "A,B,clock").split(",")
    output = h.option("output", "benchmarks/results/latency-e2e.md" if os.environ.get("BACKLANE_WRITE_RESULTS") else "")
    phases: list[Phase] = []
    with h.Infra(with_postgres=True) as infra:
        os.environ.update(BACKLANE_BROKER__URL=infra.amqp_url, BACKLANE_WORKER__METRICS_PORT="0")
        os.environ["BACKLANE_DATABASE__URL"] = "sqlite:///" + str(infra.workdir / "unused.db")
        # Only now: importing the application (anything that imports actors/) builds its
        # broker from the environment, which must name this run's node.
        import scheduler  # noqa: F401  (declares the discover actors)

        _DOTNET_HOST = _dotnet_host()
        h.log(f"capacity: {n:,} orders published at once (load {h.load()}) ...")
        cap = capacity(infra, s, n)
        h.log(f"  C = {cap:,.1f} orders/s")
        cap_a = capacity_inbox(infra, s, n) if "A" in paths else math.nan
        h.log(f"  path A's own: {cap_a:,.1f} orders/s ({n:,} OrderCreated published at once)")
        runs: list[tuple[str, float, float, float, bool]] = []
        for load in loads:
            if "A" in paths:
                runs.append(("A", load, duration, 0.0, False))
            if "B" in paths:
                runs.append(("B", load, duration, tick_seconds, False))
        if "clock" in paths:
            runs.append(("B-clock", clock_load, clock_duration, 0.0, True))
        for path, load, seconds, tick, clock in runs:
            rate = cap * load / 100
            label = f"{load:g}%"
            h.log(f"path {path} at {label} of C: {rate:.1f} orders/s for {seconds:g} s (load {h.load()}) ...")
            phase = run_phase(infra, s, path, label, rate, seconds, tick_seconds=tick, clock=clock)
            phases.append(phase)
            settled = [x.settled - x.t0 for x in phase.orders]
            h.log(f"  {len(phase.orders)} orders, t0 -> settled p50/p95/p99 {spread(settled)}")
    text = report(phases, cap, cap_a, s, n, duration, tick_seconds, clock_duration)
    print(text)
    if output:
        Path(output).write_text(text + "\n")
        h.log(f"written to {output}")


def report(
    phases: Sequence[Phase],
    cap: float,
    cap_a: float,
    s: Settings,
    n: int,
    duration: float,
    tick: float,
    clock_duration: float,
) -> str:
    loads_a = ", ".join(f"{p.load} of C = {p.target / cap_a:.0%}" for p in phases if p.path == "A")
    headers, rows = breakdown_rows(phases, s.poll)
    return "\n\n".join(
        [
            h.table(
                f"End-to-end latency, PostgreSQL, {s.processes} processes x {s.threads} threads, order API"
                f" answering in {s.latency_ms:g} ms, capacity C = {cap:,.1f} orders/s ({h.machine()};"
                f" load at the end {h.load()})",
                [
                    "path",
                    "load (of C)",
                    "orders/s target / achieved",
                    "orders settled / sent",
                    "t0 → placed p50 / p95 / p99",
                    "t0 → settled p50 / p95 / p99",
                    "tick sent → placed",
                    "tick sent → settled",
                    "worst arrival lag",
                    "load before",
                ],
                latency_rows(phases),
                [
                    f"C: {n:,} pending orders, {n:,} process_orders messages published at once by the harness,"
                    " first publish to the last settled row (compare.py's backlane system)",
                    f"path A's own capacity: {n:,} pending orders, their {n:,} OrderCreated published at once"
                    f" (MassTransit's envelope, one confirm each): C_A = {cap_a:,.1f} orders/s; path A's loads"
                    f" of C_A: {loads_a or 'n/a'}",
                    "A: open-loop arrivals (a harness thread, steady spacing) insert the pending row, then publish"
                    " OrderCreated(RequestId) in MassTransit's envelope to the SharedContracts:OrderCreated exchange"
                    f" (persistent, mandatory, confirmed); t0 = the publish; {duration:g} s per load",
                    f"B: the same arrivals insert rows only; the harness sends the orders discover every {tick:g} s"
                    " (what `backlane trigger orders` sends); t0 = the row's created_at",
                    f"B-clock: `periodiq scheduler`, the orders tick every minute (* * * * *), {clock_duration:g} s"
                    " of arrivals; tick sent = the top of the minute",
                    "placed: the row's write of status=placed, after POST /orders and the first GET (read from the"
                    f" lease that write set; the simulator's /_admin/stats has no per-request times): the API"
                    f" created the order about one GET ({s.latency_ms:g} ms) before it",
                    f"settled: the row's settled_at; simulator --order-settle-polls {SETTLE_POLLS}: one status poll"
                    f" per order, BACKLANE_ORDERS__STATUS_POLL_SECONDS={s.poll:g} (default 5)",
                    f"BACKLANE_ORDERS__MAX_ITEMS={MAX_ITEMS} (default 500), LEASE_SECONDS={LEASE_SECONDS:g};"
                    " worst arrival lag: how late the arrivals thread ran behind its schedule",
                    "BACKLANE_BROKER__PREFETCH=0 (Dramatiq's 2 x threads per process); Dramatiq's worker timeout"
                    f" {s.worker_timeout_ms or 1000} ms (dramatiq_worker_timeout); a delay queue's consumer looks"
                    " again when the earliest delayed message it holds is due (backlane/messaging/delay_looks.py,"
                    " at most every BACKLANE_BROKER__DELAY_POLL_MS), after the worker timeout when it holds none",
                ],
            ),
            h.table(
                "Where the time goes (from the outcome lines: each attempt's end and duration, ms resolution)",
                headers,
                rows,
            ),
        ]
    )


if __name__ == "__main__":
    main()
