"""PostgreSQL failover under load: a primary and a streaming standby (:mod:`devtools.pg_cluster`),
every process on one multi-host URL (``target_session_attrs=read-write``), orders in flight.

    python -m tests.cluster failover                  # the four scenarios, writes benchmarks/results/pg-failover.md
    python -m tests.cluster failover --only kill --orders 200 --output /tmp/x.md

Scenarios: ``kill`` (primary SIGKILLed, standby promoted), ``cut`` (the primary's host off the
network, its server still running, standby promoted), ``switchover`` (planned: clean stop,
promotion, old primary rewound as the new standby), ``split`` (the old primary cut off from its
standby and from worker host w1 but still serving w2 while the standby is promoted: a split
brain; then fenced, its network cut while it still accepts local connections). Each checks
the fault harness's accounting against the *new* primary — every order succeeded there and
created exactly once at the order API (per request id), no item lost, no dead letter without
its failed row — and measures the recovery time: promotion → first order settled on the new
primary. Needs root and iproute2.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import func, select

from actors.orders.models import Order
from backlane.core.clock import as_utc
from devtools.cluster import ClusterUnavailable
from devtools.pg_cluster import FailoverCluster, PgPair
from devtools.stack import Placement
from tests.cluster.harness import ClusterInfra
from tests.faults.__main__ import details, text_table
from tests.faults.harness import FaultRun, Outcome, Scale, fault_run

ROOT = Path(__file__).resolve().parents[2]

#: A few hundred orders at 100 ms, a 20 s lease (rows a dead connection held come back soon).
FAILOVER = Scale("failover", orders=300, tracks=10, latency_ms=100, settle_timeout=240, lease_seconds=20)


class FailoverInfra(ClusterInfra):
    """The fault harness's infrastructure on a :class:`FailoverCluster`: one RabbitMQ node,
    workers on w1/w2, the simulator on ``api``, the database a :class:`PgPair`."""

    queue_type = "classic"

    def __init__(self, base_dir: Path | None = None, *, synchronous: bool = False) -> None:
        self.cluster = FailoverCluster(base_dir, synchronous=synchronous)
        self.base_dir = self.cluster.base_dir
        self.pair: PgPair = self.cluster.pair
        self.postgres = self.pair  # type: ignore[assignment]  # create/drop database, is_running, start
        self.rabbitmq = self.cluster.nodes[0]

    def start(self) -> FailoverInfra:
        self.cluster.start()
        return self

    def ensure_up(self) -> None:
        self.pair.unpartition()
        super().ensure_up()

    def place(self, kind: str, index: int, host: str = "") -> Placement | None:
        if kind == "simulator":
            where = self.cluster.hosts["api"]
            return Placement(host="api", address=where.address, prefix=where.prefix())
        return super().place(kind, index, host)


def _succeeded(url: str, timeout: float = 3) -> set[int]:
    """Ids of the orders succeeded on one server (its own URL, not the multi-host one)."""
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, connect_timeout=max(1, round(timeout)), autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM orders WHERE status = 'succeeded'")}


def first_settle_after(run: FaultRun, promoted: datetime) -> float | None:
    """Seconds from the promotion until the first order settled after it (its ``settled_at``,
    read from the new primary once the run is over); None if none settled after it."""
    with run.db.transaction() as session:
        first = session.execute(
            select(func.min(Order.settled_at)).where(Order.status == "succeeded", Order.settled_at > promoted)
        ).scalar()
    return None if first is None else (as_utc(first) - promoted).total_seconds()


def _finish(run: FaultRun, promoted: datetime) -> Outcome:
    run.clear_fault()
    run.wait_settled()
    outcome = run.account()
    recovery = first_settle_after(run, promoted)
    outcome.recover_seconds = None if recovery is None else round(recovery, 1)
    outcome.notes.append(f"recovery (promotion -> first order settled on the new primary): {_seconds(recovery)}")
    letters = run.dead_letters()
    if letters:
        outcome.problems.append(f"{len(letters)} dead letter(s) in a run where no order should fail")
    return outcome


def kill_and_promote(infra: FailoverInfra, scale: Scale) -> Outcome:
    """SIGKILL the primary mid-run, promote the standby at once (a scripted failover)."""
    pair = infra.pair
    with fault_run(infra, "primary SIGKILLed, standby promoted", scale) as run:
        run.start()
        run.wait_settled_part(0.25)
        lag = pair.lag_bytes()
        killed = time.monotonic()
        pair.kill_primary()
        pair.promote()
        promoted = datetime.now(UTC)
        run.notes.append(
            f"standby {lag} bytes behind at the kill; kill to promoted in {time.monotonic() - killed:.1f} s"
        )
        return _finish(run, promoted)


def host_cut(infra: FailoverInfra, scale: Scale) -> Outcome:
    """The primary's host drops off the network mid-run (its server still running: a dead NIC, a
    hung VM); the standby is promoted at once. Every process's connections to it now hang
    rather than fail: how soon they give up is TCP keepalives and tcp_user_timeout."""
    pair = infra.pair
    with fault_run(infra, "primary's host cut off, standby promoted", scale) as run:
        run.start()
        run.wait_settled_part(0.25)
        old = pair.primary
        infra.cluster.cut(old)
        pair.promote()
        promoted = datetime.now(UTC)
        outcome = _finish(run, promoted)
        infra.cluster.heal(old)
        return outcome


def switchover(infra: FailoverInfra, scale: Scale) -> Outcome:
    """Planned switchover mid-run: clean stop, promotion, the old primary rewound as the standby."""
    pair = infra.pair
    with fault_run(infra, "planned switchover (old primary rewound as standby)", scale) as run:
        run.start()
        run.wait_settled_part(0.25)
        stopped = time.monotonic()
        promoted_at = pair.switchover()
        promoted = datetime.now(UTC) - timedelta(seconds=time.monotonic() - promoted_at)
        run.notes.append(
            f"primary stopped to standby promoted in {promoted_at - stopped:.1f} s; old primary rewound and "
            f"streaming from the new one {time.monotonic() - promoted_at:.1f} s after the promotion"
        )
        if not pair.streaming():
            run.problems.append("the old primary is not streaming from the new one")
        return _finish(run, promoted)


def split_brain(infra: FailoverInfra, scale: Scale, split_seconds: float = 12) -> Outcome:
    """The primary loses its standby and worker host w1 but still serves w2; the standby is
    promoted; w2 keeps writing to the old primary for ``split_seconds``; then the old primary is
    fenced (network cut, still accepting local connections)."""
    pair = infra.pair
    with fault_run(infra, f"old primary split off {split_seconds:.0f} s, then fenced", scale) as run:
        run.start()
        run.wait_settled_part(0.25)
        old = pair.primary
        pair.partition(old, pair.standby, "w1")
        pair.promote()
        promoted = datetime.now(UTC)
        run.sleep(split_seconds)
        infra.cluster.cut(old)  # fenced: nobody reaches it; it still runs and answers locally
        on_new = _succeeded(pair.node_url(pair.primary, run.db_name))
        raw = pair.local_psql(old, "SELECT id FROM orders WHERE status = 'succeeded'", run.db_name)
        on_old = {int(x) for x in raw.split()}
        only_old = on_old - on_new
        run.notes.append(
            f"at the fence: {len(on_old)} orders succeeded on the old primary, {len(on_new)} on the new; "
            f"{len(only_old)} succeeded only on the old one (written there after the promotion), "
            f"{len(on_new - on_old)} only on the new one"
        )
        outcome = _finish(run, promoted)
        states = run.order_states()
        redone = sum(1 for oid in only_old if states.get(oid, ("",))[0] == "succeeded")
        stats = run.sim_stats()["orders"]["by_key"]
        with run.db.transaction() as session:
            keys = dict(session.execute(select(Order.id, Order.request_id)).tuples().all())
        once = sum(1 for oid in only_old if stats.get(keys[oid], {}).get("creations", 0) == 1)
        outcome.notes.append(
            f"of the {len(only_old)} written only on the old primary: {redone} settled again on the new "
            f"primary, {once} created exactly once at the order API (its request id deduped the redo)"
        )
        if redone != len(only_old) or once != len(only_old):
            outcome.problems.append("an order settled only on the old primary was not redone exactly once")
        if not only_old:
            outcome.notes.append("(no write reached the old primary after the promotion this run)")
        infra.cluster.heal(old)
        return outcome


def _seconds(value: float | None) -> str:
    return "none within 120 s" if value is None else f"{value:.1f} s"


@dataclass(frozen=True)
class Entry:
    name: str
    func: Callable[[FailoverInfra, Scale], Outcome]


SCENARIOS = [
    Entry("kill", kill_and_promote),
    Entry("cut", host_cut),
    Entry("switchover", switchover),
    Entry("split", split_brain),
]
BY_NAME = {e.name: e for e in SCENARIOS}
HEADS = (
    "scenario",
    "orders",
    "settled once",
    "lost",
    "placed twice",
    "dead letters unaccounted",
    "recovery s",
    "result",
)


def _row(o: Outcome) -> list[str]:
    if o.error:
        return [o.fault, "-", "-", "-", "-", "-", "-", "FAIL"]
    cells = [str(v) for v in (o.orders, o.orders_settled, o.lost, o.twice, o.dead_letters_unaccounted)]
    recovery = "-" if o.recover_seconds is None else f"{o.recover_seconds:.1f}"
    return [o.fault, *cells, recovery, "pass" if o.ok else "FAIL"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster failover", description="PostgreSQL failover runs")
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME))
    parser.add_argument("--orders", type=int, default=FAILOVER.orders)
    parser.add_argument("--synchronous", action="store_true", help="synchronous_commit=on with a synchronous standby")
    parser.add_argument(
        "--no-tcp-timeouts",
        action="store_true",
        help="keepalives=0&tcp_user_timeout=0 in the URL: backlane's connections as they were before this branch",
    )
    parser.add_argument("--output", default=None, help="report file (default benchmarks/results/pg-failover.md)")
    args = parser.parse_args(argv)
    scale = Scale(**{**FAILOVER.__dict__, "orders": args.orders})
    entries = [BY_NAME[n] for n in args.only] if args.only else SCENARIOS
    output = Path(args.output or ROOT / "benchmarks" / "results" / "pg-failover.md")
    command = "python -m tests.cluster failover" + "".join(f" --only {n}" for n in args.only or [])
    command += f" --orders {args.orders}" if args.orders != FAILOVER.orders else ""
    command += " --synchronous" if args.synchronous else ""
    command += " --no-tcp-timeouts" if args.no_tcp_timeouts else ""
    try:
        infra = FailoverInfra(synchronous=args.synchronous)
        if args.no_tcp_timeouts:
            infra.pair.url_extra = "&keepalives=0&tcp_user_timeout=0"
    except ClusterUnavailable as exc:
        print(f"failover: {exc}", file=sys.stderr)
        return 2
    began = time.monotonic()
    outcomes: list[Outcome] = []
    try:
        infra.start()
        print(f"pair up on {infra.cluster.subnet} in {time.monotonic() - began:.0f}s", flush=True)
        for entry in entries:
            print(f"-- {entry.name}", flush=True)
            try:
                outcome = entry.func(infra, scale)
            except Exception as exc:
                outcome = Outcome(entry.name, error=f"{type(exc).__name__}: {str(exc)[:300]}")
            finally:
                try:
                    infra.pair.start()  # back to db primary, db2 a fresh standby
                    infra.ensure_up()
                except Exception as exc:
                    print(f"   (could not restore the pair: {exc})", flush=True)
            outcomes.append(outcome)
            print(text_table(HEADS, [_row(outcome)]), flush=True)
            for line in [*outcome.failures(), *outcome.notes]:
                print(f"   {line}", flush=True)
    finally:
        infra.close()
    mode = (
        "synchronous (synchronous_commit=on, synchronous_standby_names=*)"
        if args.synchronous
        else "asynchronous (synchronous_commit=local)"
    )
    tcp = (
        " TCP keepalives and tcp_user_timeout off (`&keepalives=0&tcp_user_timeout=0`)." if args.no_tcp_timeouts else ""
    )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    output.write_text(
        f"""# PostgreSQL failover runs

Reproduce with (as root):

```sh
{command}
```

Run {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")} on commit `{commit.stdout.strip()}`, {platform.platform()},
{os.cpu_count()} CPU(s), load average at the end {load} (a shared machine). Namespaced hosts on a
private bridge: `db` (primary) and `db2` (streaming standby, physical slot) running Debian's
PostgreSQL 15, `r1` (RabbitMQ), `w1`/`w2` (one worker of 8 threads each, the clock on `w1`), `api`
(the order API simulator at {scale.latency_ms} ms). Every process connects with
`postgresql+psycopg://postgres@/DB?host=<db>:5432,<db2>:5432&target_session_attrs=read-write`.
Replication {mode}.{tcp}
{scale.orders} orders and {scale.tracks} due tracks per scenario, lease {scale.lease_seconds} s.
*settled once* = succeeded on the new primary and created exactly once at the order API.

{text_table(HEADS, [_row(o) for o in outcomes], markdown=True)}

## Per scenario

{details(outcomes)}
"""
    )
    print(f"wrote {output}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
