"""Run the fault suite and print one table: ``python -m tests.faults`` (``scripts/faults``).

    python -m tests.faults                       # every scenario, full scale, writes docs/faults.md
    python -m tests.faults --scale fast          # small scale (200 orders), no docs/faults.md unless --output
    python -m tests.faults --only worker_sigkill --only rabbitmq_kill9
    python -m tests.faults --list

Exit status 0 when every scenario passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.faults.harness import FAST, FULL, Infra, Outcome, Scale
from tests.faults.scenarios import BY_NAME, SCENARIOS, run_scenario

ROOT = Path(__file__).resolve().parents[2]

COLUMNS = (
    ("fault", "fault"),
    ("items", "items"),
    ("settled", "settled"),
    ("failed w/ reason", "failed_with_reason"),
    ("lost", "lost"),
    ("twice", "twice"),
    ("DL w/o failed row", "dead_letters_unaccounted"),
    ("procs lost", "processes_lost"),
    ("recover s", "recover_seconds"),
    ("result", "result"),
)


def _cell(outcome: Outcome, attr: str) -> str:
    if attr == "result":
        return "pass" if outcome.ok else "FAIL"
    if outcome.error and attr not in ("fault",):
        return "-"
    value = getattr(outcome, attr)
    if attr == "recover_seconds":
        return "never" if value is None else f"{value:.1f}"
    return str(value)


def text_table(heads: Sequence[str], rows: list[list[str]], markdown: bool = False) -> str:
    """The fault table as markdown, or aligned for a terminal (first column left, the rest right)."""
    if markdown:
        lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]

    def fmt(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([fmt(heads), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def table(outcomes: list[Outcome], markdown: bool = False) -> str:
    rows = [[_cell(o, attr) for _, attr in COLUMNS] for o in outcomes]
    return text_table([head for head, _ in COLUMNS], rows, markdown)


def details(outcomes: list[Outcome]) -> str:
    lines = []
    for o in outcomes:
        lines.append(f"- **{o.fault}**: {'pass' if o.ok else 'FAIL'}")
        lines += [f"  - failure: {line}" for line in o.failures()]
        lines += [f"  - {note}" for note in o.notes]
    return "\n".join(lines)


def write_report(path: Path, outcomes: list[Outcome], scale: Scale, command: str, seconds: float) -> None:
    commit = (
        os.environ.get("BACKLANE_FAULTS_COMMIT")
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    )
    passed = sum(1 for o in outcomes if o.ok)
    text = f"""# Fault-injection results

Reproduce with:

```sh
{command}
```

Run {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")} on commit `{commit or "?"}`,
{platform.platform()}, {os.cpu_count()} CPU(s); scale **{scale.name}**: {scale.orders} orders,
{scale.tracks} due tracks, the 12 catalog sections and {scale.batches} staging batches per
vendor per scenario, 2 worker processes (3 where stated) with 8 threads each, the `periodiq`
clock, the simulator, a private
RabbitMQ node and PostgreSQL server. {len(outcomes)} scenario(s) in {seconds / 60:.1f} min:
**{passed} passed, {len(outcomes) - passed} failed**.

Columns: *items* = orders + due tracks + catalog sections + staging batches; *settled* =
orders succeeded and placed exactly once at the order API, tracks gone with both objects,
sections refreshed after the fault, batches completed; *failed w/ reason* = row marked
failed with its reason; *lost* = neither; *twice* = orders the simulator created more than
once for one request id, plus staging batches a vendor scraped under a second key (a batch
is scraped under its own Idempotency-Key, which the vendor honours: its repeated calls,
answered as replays and scraping nothing, are in the notes; the freeze scenarios allow no
more of them than the frozen worker had calls in flight when it was stopped); *DL w/o failed row* = dead
letters no failed row (or malformed message injected on purpose) accounts for; *procs lost* = workers or clocks that
exited on their own (the suite restarts, and does not count, the ones it killed or
stopped itself); *recover s* = seconds from the end of the fault until every item
was final ("never": not within the settle timeout).

{table(outcomes, markdown=True)}

## Per scenario

{details(outcomes)}

## Fault runs of their own

Faults that need more than one scenario's system are run by their own commands, each with
its result beside it:

- the one-hour chaos soak, faults at random with the seed printed: `python -m tests.faults.soak`
  ([soak.md](soak.md), the last hour's report in `benchmarks/results/soak-60min.md`);
- PostgreSQL failing over (primary killed, host cut off, switchover, split brain) on namespaced
  hosts: `python -m tests.cluster failover` (`benchmarks/results/pg-failover.md`);
- RabbitMQ cluster node faults: `scripts/cluster-faults` ([cluster-faults.md](cluster-faults.md));
- the rolling upgrade, N-1 workers and clock beside a migration and N's:
  `scripts/test tests/acceptance/test_rolling_upgrade.py` ([upgrades.md](upgrades.md)).
"""
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["full", "fast"], default="full")
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), help="run this scenario (repeatable)")
    parser.add_argument("--output", help="write the report here (default: docs/faults.md for a full run of all)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        for entry in SCENARIOS:
            where = "fast subset" if entry.fast else "full suite only"
            print(f"{entry.name:<40} {where:<16} {(entry.func.__doc__ or '').splitlines()[0]}")
        return 0
    scale = FULL if args.scale == "full" else FAST
    entries = [BY_NAME[name] for name in args.only] if args.only else SCENARIOS
    output = args.output or ("docs/faults.md" if scale is FULL and not args.only else None)
    command = "scripts/faults" + (f" --scale {args.scale}" if args.scale != "full" else "")
    command += "".join(f" --only {name}" for name in args.only or [])

    began = time.monotonic()
    return run_and_report(Infra().start(), entries, scale, run_scenario, table, write_report, output, command, began)


def run_and_report(
    infra: Any,
    entries: Sequence[Any],
    scale: Scale,
    run: Callable[[Any, Any, Scale], Outcome],
    tabulate: Callable[[list[Outcome]], str],
    report: Callable[[Path, list[Outcome], Scale, str, float], None],
    output: str | None,
    command: str,
    began: float | None = None,
) -> int:
    """Run each scenario on the started ``infra`` (closed at the end, whatever happens),
    printing its verdict as it ends, then the table; write the report when ``output`` is
    given. Exit status 0 only when every scenario passed. The single-node and the
    cluster suites share it, each with its own scenarios, table and report."""
    began = time.monotonic() if began is None else began
    outcomes: list[Outcome] = []
    try:
        for entry in entries:
            started = time.monotonic()
            print(f"== {entry.name} ({scale.name}) ...", flush=True)
            outcome = run(entry, infra, scale)
            outcomes.append(outcome)
            verdict = "pass" if outcome.ok else "FAIL: " + "; ".join(outcome.failures())
            print(f"   {verdict} ({time.monotonic() - started:.0f}s)", flush=True)
            for note in outcome.notes:
                print(f"   - {note}", flush=True)
    finally:
        infra.close()
    print()
    print(tabulate(outcomes))
    if output:
        path = Path(output) if Path(output).is_absolute() else ROOT / output
        report(path, outcomes, scale, command, time.monotonic() - began)
        print(f"\nwrote {path}")
    return 0 if outcomes and all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
