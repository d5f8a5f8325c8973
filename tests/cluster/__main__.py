"""Build the namespaced cluster, run each cluster fault, print one table: ``python -m tests.cluster``
(``scripts/cluster-faults``).

    python -m tests.cluster                      # the four faults, 2,000 orders each, writes docs/cluster-faults.md
    python -m tests.cluster --scale ci           # 300 orders each, no report unless --output
    python -m tests.cluster --only node_kill9 --only node_partition
    python -m tests.cluster failover             # PostgreSQL failover (tests/cluster/failover.py)

Needs root and iproute2 (network namespaces). Exit status 0 when every fault passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from devtools.cluster import ClusterUnavailable
from tests.cluster.harness import CLUSTER_CI, CLUSTER_FULL, ClusterInfra
from tests.cluster.scenarios import BY_NAME, SCENARIOS, run_scenario
from tests.faults.__main__ import details, run_and_report, text_table
from tests.faults.harness import Outcome, Scale

ROOT = Path(__file__).resolve().parents[2]

HEADS = ("fault", "orders", "settled", "lost", "placed twice", "other items", "recover s", "result")


def row(o: Outcome) -> list[str]:
    if o.error:
        return [o.fault, "-", "-", "-", "-", "-", "-", "FAIL"]
    others = o.items - o.orders
    recover = "never" if o.recover_seconds is None else f"{o.recover_seconds:.1f}"
    other_settled = o.settled - o.orders_settled
    return [
        o.fault,
        str(o.orders),
        str(o.orders_settled),
        str(o.lost),
        str(o.twice),
        f"{other_settled}/{others}",
        recover,
        "pass" if o.ok else "FAIL",
    ]


def table(outcomes: list[Outcome], markdown: bool = False) -> str:
    return text_table(HEADS, [row(o) for o in outcomes], markdown)


def write_report(path: Path, outcomes: list[Outcome], scale: Scale, command: str, seconds: float) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    passed = sum(1 for o in outcomes if o.ok)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"
    text = f"""# Cluster fault results

Reproduce with (as root):

```sh
{command}
```

Run {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")} on commit `{commit.stdout.strip() or "?"}`,
{platform.platform()}, {os.cpu_count()} CPU(s), load average at the end {load} (the machine is shared).
The cluster: six network namespaces on a private bridge: three RabbitMQ 3.10 nodes in one
cluster (`pause_minority`, quorum queues for everything backlane declares), worker hosts
`w1` and `w2` (one worker process of 8 threads each; the clock on `w1`, a second clock on
`w2` where stated), and `db` (PostgreSQL 15 and the simulator). Every process lists the three
nodes in `BACKLANE_BROKER__URL` (`heartbeat=5`). Scale **{scale.name}**: {scale.orders} orders,
{scale.tracks} due tracks and the 12 catalog sections per fault, lease {scale.lease_seconds} s.
{len(outcomes)} fault(s) in {seconds / 60:.1f} min: **{passed} passed, {len(outcomes) - passed} failed**.

Columns: *orders* = orders in the run; *settled* = orders succeeded and placed exactly once at
the order API (the simulator's count per request id); *lost* = items (orders, tracks,
sections) neither settled nor failed with a reason; *placed twice* = orders the simulator
created more than once for one request id; *other items* = tracks and catalog sections
settled / in the run; *recover s* = seconds from the end of the fault until every item
was final.

{table(outcomes, markdown=True)}

## Per fault

{details(outcomes)}
"""
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["failover"]:  # PostgreSQL failover: tests/cluster/failover.py
        from tests.cluster.failover import main as failover

        return failover(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", choices=["full", "ci"], default="full")
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), help="run this fault (repeatable)")
    parser.add_argument("--output", help="write the report here (default: docs/cluster-faults.md for a full run)")
    args = parser.parse_args(argv)
    scale = CLUSTER_FULL if args.scale == "full" else CLUSTER_CI
    entries = [BY_NAME[name] for name in args.only] if args.only else SCENARIOS
    output = args.output or ("docs/cluster-faults.md" if scale is CLUSTER_FULL and not args.only else None)
    command = "scripts/cluster-faults" + (f" --scale {args.scale}" if args.scale != "full" else "")
    command += "".join(f" --only {name}" for name in args.only or [])

    began = time.monotonic()
    try:
        infra = ClusterInfra()
    except ClusterUnavailable as exc:
        print(f"cluster-faults: {exc}", file=sys.stderr)
        return 2
    print(f"building the cluster on {infra.cluster.subnet} ...", flush=True)
    try:
        infra.start()
    except BaseException:
        infra.close()
        raise
    print(f"   up in {time.monotonic() - began:.0f}s", flush=True)
    return run_and_report(infra, entries, scale, run_scenario, table, write_report, output, command, began)


if __name__ == "__main__":
    sys.exit(main())
