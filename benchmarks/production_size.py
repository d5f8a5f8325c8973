"""Cost at production size: the operations an operator runs, over two years of orders (PostgreSQL).

    python benchmarks/production_size.py [ORDERS ...] [--letters=N] [--due=5000] [--failed=N]
        [--days=730] [--repeat=5] [--keep=DIR] [--explain] [--output=PATH]

For each size (default 1,000,000 and 10,000,000 orders) a database is bulk-loaded with
``INSERT ... SELECT generate_series`` (benchmarks/_orders_data.py): ``--due`` pending orders
created over the last 48 hours, ``--failed`` (default a tenth of the orders) failed with a
reason, the rest succeeded, spread over ``--days`` (two years); then ``VACUUM ANALYZE``. Beside
it a private RabbitMQ node gets ``--letters`` (default one per hundred orders) dead letters
in ``orders.XQ``. Then, each in the process an operator would run it in:

- the orders discover tick, :func:`backlane.core.discovery.discover` as discover_cost.py runs
  it, claiming its default ``max_items`` (in a child process, whose peak RSS is the table's);
- ``backlane status`` (a subprocess: wall time, peak RSS from ``wait4``), and with ``--exact``;
- ``backlane dead-letters list``, by default and with ``--limit 10000``;
- a running ``backlane dashboard``: the overview, the orders page, its failed filter, a search
  by request id and by external id, and the dead-letters page (request times; the server's
  peak RSS, VmHWM, after all of them);
- ``backlane dead-letters requeue --all --queue orders`` once (time, peak RSS); then every
  letter's message id must be on ``orders`` exactly once and ``orders.XQ`` empty.

Times are the median of ``--repeat`` runs after one warm-up (the requeue runs once). With
``--keep=DIR`` PostgreSQL keeps its data in DIR and a later run with the same sizes and options
reuses the loaded tables (migrations are still applied); no server outlives the script.
``--explain`` turns PostgreSQL's auto_explain on for statements over 20 ms (ANALYZE, BUFFERS)
and prints the plans logged meanwhile to stderr at the end. The table goes to stdout, and to
``--output`` (or benchmarks/results/production-size.md when BACKLANE_WRITE_RESULTS=1).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h
import _orders_data as data
import httpx
from sqlalchemy import create_engine, text

QUEUE = "orders"
ACTOR = "process_orders"
XQ = f"{QUEUE}.XQ"
CLI = [sys.executable, "-m", "backlane.cli"]


def measured(argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> tuple[float, int, str]:
    """Run a command to its end: (wall seconds, its own peak RSS in bytes from wait4, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, text=True)
        # wait4 gives this child's own rusage (ru_maxrss, KiB), not the maximum over all children.
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        output, errors = out.read(), err.read()
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv[2:])} exited {proc.returncode}:\n{errors[-2000:]}")
    return elapsed, usage.ru_maxrss * 1024, output


def repeated(argv: list[str], env: dict[str, str], repeat: int, ok: tuple[int, ...] = (0,)) -> tuple[float, float, int]:
    """(median seconds, slowest, peak RSS over the runs) of ``repeat`` runs after one warm-up."""
    times, peak = [], 0
    for i in range(repeat + 1):
        elapsed, rss, _ = measured(argv, env, ok)
        if i:
            times.append(elapsed)
            peak = max(peak, rss)
    return statistics.median(times), max(times), peak


def fingerprint(rows: int, due: int, failed: int, days: float) -> str:
    return f"backlane-bench production_size rows={rows} due={due} failed={failed} days={days}"


def database(infra: h.Infra, rows: int, due: int, failed: int, days: float) -> tuple[str, float | None]:
    """The size's database, loaded (or reused from --keep): its URL and the load seconds (None: reused)."""
    name = f"prodsize_{rows}"
    mark = fingerprint(rows, due, failed, days)
    if infra.postgres_dir is not None and infra.has_database(name):
        url = infra.postgres.url(name)  # type: ignore[union-attr]
        engine = create_engine(url)
        with engine.connect() as conn:
            found = conn.scalar(text("SELECT obj_description('orders'::regclass, 'pg_class')"))
        engine.dispose()
        if found == mark:
            h.log(f"{rows:,}: reusing the loaded database {name}")
            return url, None
    url = infra.database("postgresql", name)
    h.log(f"{rows:,}: loading {rows:,} orders ({due:,} due, {failed:,} failed, over {days:g} days) ...")
    seconds = data.load_orders(url, rows, due=due, failed=failed, days=days, due_hours=48)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"COMMENT ON TABLE orders IS '{mark}'"))
    engine.dispose()
    h.log(f"{rows:,}: loaded in {seconds:.0f} s")
    return url, seconds


def discover_child() -> None:
    """``--child=discover``: the ticks in this process (its env names the broker and database)."""
    import discover_cost

    import scheduler  # noqa: F401 (builds the broker from this process's env)
    from backlane.core.registry import REGISTRY

    repeat = int(h.option("repeat", "5"))
    url = os.environ["BACKLANE_DATABASE__URL"]
    batch = REGISTRY.get("orders").context().config.max_items  # the default a tick claims
    queues = h.Queues(os.environ["BACKLANE_BROKER__URL"])
    durations, claims = discover_cost.ticks(url, batch, repeat, queues)
    queues.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"batch": batch, "ticks": durations, "claims": claims, "peak": peak}))


def fetch(client: httpx.Client, url: str, repeat: int) -> tuple[float, float, float]:
    """(median seconds, slowest, median server seconds from Server-Timing) after one warm-up."""
    times, server = [], []
    for i in range(repeat + 1):
        started = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, (url, response.status_code, response.text[:500])
        if i:
            times.append(elapsed)
            timing = response.headers.get("server-timing", "dur=nan")
            server.append(float(timing.split("dur=")[1].split(",")[0]) / 1000)
    return statistics.median(times), max(times), statistics.median(server)


def peak_rss(pid: int) -> int:
    """VmHWM: the highest resident set size ``pid`` has had."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def mib(value: int) -> str:
    return f"{value / 2**20:.0f}"


def one(infra: h.Infra, rows: int, letters: int, opts: dict[str, Any]) -> tuple[list[list[Any]], float | None]:
    due, repeat, days = opts["due"], opts["repeat"], opts["days"]
    failed = opts["failed"] if opts["failed"] is not None else rows // 10
    url, load_seconds = database(infra, rows, due, failed, days)
    env = {
        **os.environ,
        "BACKLANE_BROKER__URL": infra.amqp_url,
        "BACKLANE_BROKER__MANAGEMENT_URL": infra.rabbitmq.management_url if infra.rabbitmq else "",
        "BACKLANE_DATABASE__URL": url,
        "BACKLANE_WORKER__METRICS_PORT": "0",
        "PYTHONPATH": os.pathsep.join([str(h.ROOT), str(h.BENCH_DIR)]),
    }
    for command in ("migrate", "declare-queues"):  # the pipelines' own migrations and queues too
        measured([*CLI, command], env)
    engine = create_engine(url)
    with engine.begin() as conn:  # what an earlier pass (--keep) left: leases, a requeue's job rows
        conn.execute(text("UPDATE orders SET lease_until = NULL WHERE lease_until IS NOT NULL"))
    if opts["explain"]:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER DATABASE prodsize_{rows} SET session_preload_libraries = 'auto_explain'"))
            for key, value in (("log_min_duration", "'20ms'"), ("log_analyze", "on"), ("log_buffers", "on")):
                conn.execute(text(f"ALTER DATABASE prodsize_{rows} SET auto_explain.{key} = {value}"))
    engine.dispose()
    queues = h.Queues(infra.amqp_url)
    queues.purge(QUEUE, XQ)
    table: list[list[Any]] = []

    def add(operation: str, median: float, slowest: float, peak: int | None, note: str = "") -> None:
        table.append([f"{rows:,}", operation, median * 1000, slowest * 1000, mib(peak) if peak else "-", note])
        h.log(f"{rows:,}: {operation}: median {median * 1000:,.0f} ms")

    h.log(f"{rows:,}: discover ticks ...")
    _, child_peak, out = measured([sys.executable, str(Path(__file__)), "--child=discover", f"--repeat={repeat}"], env)
    ticks = json.loads(out.strip().splitlines()[-1])
    add(
        f"discover tick (claim {ticks['batch']} + publish)",
        statistics.median(ticks["ticks"]),
        max(ticks["ticks"]),
        child_peak,
        f"claim alone {statistics.median(ticks['claims']) * 1000:.0f} ms",
    )
    queues.purge(QUEUE)

    h.log(f"{rows:,}: backlane status ...")
    median, slowest, peak = repeated([*CLI, "--help"], env, repeat)
    add("`backlane --help`", median, slowest, peak, "start-up alone (imports, the app): the floor of every command")
    median, slowest, peak = repeated([*CLI, "status"], env, repeat, ok=(0, 1, 2, 3, 4, 5, 69))
    add("`backlane status`", median, slowest, peak, "whole command, Python start-up included")
    median, slowest, peak = repeated([*CLI, "status", "--exact"], env, repeat, ok=(0, 1, 2, 3, 4, 5, 69))
    add("`backlane status --exact`", median, slowest, peak, "every row counted")

    h.log(f"{rows:,}: filling {XQ} with {letters:,} letters ...")
    ids = data.fill_dead_letters(infra.amqp_url, QUEUE, ACTOR, letters)
    for label, extra in (("", []), (" --limit 10000", ["--limit", "10000"])):
        median, slowest, peak = repeated([*CLI, "dead-letters", "list", "--queue", QUEUE, *extra], env, repeat)
        add(f"`dead-letters list{label}`", median, slowest, peak, f"{letters:,} letters in {XQ}")

    h.log(f"{rows:,}: dashboard ...")
    stack = infra.stack(f"prodsize-{rows}", url)
    try:
        proc, base = stack.start_dashboard()
        pid = proc.proc.pid  # type: ignore[union-attr]
        middle = due + failed + (rows - due - failed) // 2
        pages = [
            ("dashboard: overview", "/"),
            ("dashboard: orders page", "/pipelines/orders"),
            ("dashboard: orders, failed only", "/pipelines/orders?state=failed"),
            ("dashboard: orders, search by request id", f"/pipelines/orders?q=bench-{middle}"),
            ("dashboard: orders, search by external id", f"/pipelines/orders?q=ext-{middle}"),
            ("dashboard: dead letters", "/dead-letters"),
        ]
        with httpx.Client(timeout=120) as client:
            for name, path in pages:
                median, slowest, server = fetch(client, base + path, repeat)
                add(name, median, slowest, None, f"server {server * 1000:,.0f} ms")
        table.append([f"{rows:,}", "dashboard process after those pages", "", "", mib(peak_rss(pid)), "peak RSS"])
    finally:
        stack.stop_all(timeout=10)

    h.log(f"{rows:,}: requeue --all ...")
    elapsed, peak, _ = measured([*CLI, "dead-letters", "requeue", "--all", "--queue", QUEUE], env)
    on_queue = queues.state(QUEUE)[0]
    left = queues.state(XQ)[0]
    got = data.drain_message_ids(infra.amqp_url, QUEUE)
    once = len(got) == letters and set(got) == set(ids)
    assert once and left == 0, (len(got), len(set(got)), left)
    add(
        "`dead-letters requeue --all`",
        elapsed,
        elapsed,
        peak,
        f"{letters / elapsed:,.0f} letters/s; {on_queue:,} on {QUEUE}, each once: {'yes' if once else 'NO'}",
    )
    queues.close()
    return table, load_seconds


def explain_log(infra: h.Infra, since: int) -> str:
    log = infra.postgres.log_file  # type: ignore[union-attr]
    with open(log, errors="replace") as f:
        f.seek(since)
        return f.read()


def main() -> None:
    if h.option("child", "") == "discover":
        return discover_child()
    sizes = h.sizes([1_000_000, 10_000_000])
    letters_opt = h.option("letters", "")
    failed_opt = h.option("failed", "")
    opts = {
        "due": int(h.option("due", "5000")),
        "failed": int(float(failed_opt)) if failed_opt else None,
        "days": float(h.option("days", "730")),
        "repeat": int(h.option("repeat", "5")),
        "explain": "--explain" in sys.argv,
    }
    keep = h.option("keep", "")
    rows: list[list[Any]] = []
    loads = []
    with h.Infra(postgres_dir=Path(keep).resolve() if keep else None) as infra:
        log_start = infra.postgres.log_file.stat().st_size if infra.postgres.log_file.exists() else 0  # type: ignore[union-attr]
        for size in sizes:
            letters = int(float(letters_opt)) if letters_opt else size // 100
            table, seconds = one(infra, size, letters, opts)
            rows.extend(table)
            loads.append(f"{size:,} orders: {'reused (--keep)' if seconds is None else f'loaded in {seconds:.0f} s'}")
        if opts["explain"]:
            h.log(explain_log(infra, log_start))
    result = h.table(
        f"Cost at production size, PostgreSQL ({h.machine()}; load {h.load()})",
        ["orders", "operation", "ms (median)", "max", "peak RSS MiB", "notes"],
        rows,
        [
            f"median of {opts['repeat']} runs after one warm-up (the requeue: one run); each command in its own"
            " process, its peak RSS from wait4 (the dashboard: the server process's VmHWM after all its pages)",
            f"orders: {opts['due']:,} pending (created over 48 h), a tenth failed with a reason (unless --failed),"
            f" the rest succeeded, over {opts['days']:g} days; dead letters: one per hundred orders, in {XQ}",
            "load (INSERT ... SELECT generate_series, then VACUUM ANALYZE): " + "; ".join(loads),
            "command: `.venv/bin/python benchmarks/production_size.py " + " ".join(sys.argv[1:]) + "`",
        ],
    )
    print(result)
    output = h.option("output", "")
    if not output and os.environ.get("BACKLANE_WRITE_RESULTS") == "1":
        output = str(h.BENCH_DIR / "results" / "production-size.md")
    if output:
        Path(output).write_text(result + "\n")


if __name__ == "__main__":
    main()
