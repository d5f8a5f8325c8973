"""The cluster's faults, one function each: a run on the namespaced cluster, the fault mid-run,
the same accounting as :mod:`tests.faults` (database, simulator counts, ``.XQ``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from devtools.sample import create_orders
from tests.cluster.harness import ClusterInfra
from tests.faults.harness import FaultRun, Outcome, Scale, fault_run


def _settled_now(run: FaultRun) -> int:
    return max(0, run.settled_orders())


def node_kill9(infra: ClusterInfra, scale: Scale) -> Outcome:
    """kill -9 the RabbitMQ node leading the orders queue mid-run; start it again 15 s later."""
    with fault_run(infra, "RabbitMQ node kill -9 (orders leader), restart", scale) as run:
        run.start()
        run.wait_settled_part(0.2)
        victim = infra.leader_of("orders")
        before = _settled_now(run)
        victim.kill()
        run.sleep(15)
        during = _settled_now(run) - before
        new_leader = infra.leader_of("orders")
        victim.start()
        run.notes.append(
            f"killed {victim.nodename} (orders leader); {during} orders settled while it was down; "
            f"orders led by {new_leader.nodename} then"
        )
        if during <= 0:
            run.problems.append("no order settled while the node was down: the workers did not move on")
        run.clear_fault()
        run.wait_settled()
        outcome = run.account()
        infra.wait_cluster_whole()
        return outcome


def node_partition(infra: ClusterInfra, scale: Scale) -> Outcome:
    """Cut the orders leader's host off from the network for 40 s (a partition; pause_minority
    pauses it), then heal it: it rejoins on its own."""
    with fault_run(infra, "RabbitMQ node partitioned 40 s, healed", scale) as run:
        run.start()
        run.wait_settled_part(0.2)
        victim = infra.leader_of("orders")
        host = victim.cluster_host.name
        before = _settled_now(run)
        infra.cluster.cut(host)
        run.sleep(40)
        during = _settled_now(run) - before
        infra.cluster.heal(host)
        run.notes.append(f"cut off {victim.nodename} (orders leader) 40 s; {during} orders settled meanwhile")
        if during <= 0:
            run.problems.append("no order settled during the partition: the majority did not carry on")
        run.clear_fault()
        whole = infra.wait_cluster_whole()
        run.notes.append(f"cluster whole again {whole:.0f} s after the heal")
        run.wait_settled()
        return run.account()


def worker_host_cut(infra: ClusterInfra, scale: Scale) -> Outcome:
    """Cut worker host w2 off from everything (RabbitMQ, PostgreSQL, the API) for longer than the
    lease: its unacked messages go back when RabbitMQ misses its heartbeats, its leased rows come
    back when the lease ends, and w1 does them; then heal it (its stale work must not repeat)."""
    cut_seconds = scale.lease_seconds + 20
    with fault_run(infra, f"worker host cut off {cut_seconds} s, healed", scale) as run:
        run.start()
        run.wait_settled_part(0.2)
        on_host = [p.name for p in run.workers() if p.host == "w2"]
        before = _settled_now(run)
        infra.cluster.cut("w2")
        run.sleep(cut_seconds)
        during = _settled_now(run) - before
        infra.cluster.heal("w2")
        run.notes.append(f"w2 ({', '.join(on_host)}) cut off {cut_seconds} s; {during} orders settled by w1 meanwhile")
        if during <= 0:
            run.problems.append("no order settled while w2 was cut off")
        run.clear_fault()
        run.wait_settled()
        return run.account()


def clock_host_cut(infra: ClusterInfra, scale: Scale) -> Outcome:
    """Two clocks (w1, w2); cut w1, the first clock's host (with its worker), off across a tick.
    Orders created meanwhile are only found by a tick: the clock on w2 must send it. No
    `backlane trigger` for orders in this run: the clocks alone."""
    with fault_run(infra, "clock's host cut off across a tick (2nd clock)", scale, clocks=2, kick=False) as run:
        run.start()
        run.wait_settled_part(0.2, timeout=240)
        infra.cluster.cut("w1")
        down_at = time.time()
        added = create_orders(run.db, max(10, scale.orders // 10), datetime.now(UTC))
        run.order_ids += added
        next_tick = (int(down_at // 60) + 1) * 60
        run.sleep(max(scale.lease_seconds + 20, next_tick + 25 - down_at))
        states = run.order_states()
        done = sum(1 for oid in added if states.get(oid, ("", None))[0] in ("succeeded", "failed"))
        infra.cluster.heal("w1")
        tick = time.strftime("%H:%M", time.localtime(next_tick))
        run.notes.append(
            f"w1 cut off {time.time() - down_at:.0f} s across the tick of {tick}; "
            f"{done} of {len(added)} orders created meanwhile settled through the clock on w2"
        )
        if done == 0:
            run.problems.append("no order created during the cut settled: the second clock did not tick")
        run.clear_fault()
        run.wait_settled(timeout=scale.settle_timeout + 60)
        return run.account()


@dataclass(frozen=True)
class Entry:
    name: str
    func: Callable[[ClusterInfra, Scale], Outcome]


SCENARIOS = [
    Entry("node_kill9", node_kill9),
    Entry("node_partition", node_partition),
    Entry("worker_host_cut", worker_host_cut),
    Entry("clock_host_cut", clock_host_cut),
]
BY_NAME = {entry.name: entry for entry in SCENARIOS}


def run_scenario(entry: Entry, infra: ClusterInfra, scale: Scale) -> Outcome:
    """Run one scenario; an exception becomes the outcome's error rather than ending the run."""
    try:
        return entry.func(infra, scale)
    except Exception as exc:  # the table must still show every scenario
        return Outcome(entry.name, error=f"{type(exc).__name__}: {str(exc)[:300]}")
    finally:
        try:
            infra.ensure_up()
        except Exception as exc:  # the next scenario will say so
            print(f"   (could not restore the cluster: {exc})", flush=True)
