"""Shared pieces of the benchmarks: private infrastructure, a stack's env, waiting and tables.

Every benchmark starts its own RabbitMQ node (and PostgreSQL server when it
needs one) in a temporary directory under /tmp, runs the real processes an
operator runs (``dramatiq actors scheduler`` workers, the simulator) through
:class:`devtools.stack.Stack`, and prints one table. Nothing here is imported by
backlane itself; benchmarks are run by hand (see docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` puts benchmarks/ first, not the repo
    sys.path.insert(0, str(ROOT))

import pika  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from backlane.db.engine import Database  # noqa: E402
from backlane.db.migrate import upgrade  # noqa: E402
from devtools.infra.postgres import PostgresNode  # noqa: E402
from devtools.infra.process import descendants  # noqa: E402
from devtools.infra.rabbitmq import RabbitMQNode  # noqa: E402
from devtools.stack import ManagedProcess, Stack  # noqa: E402

#: Worker shape used by every benchmark unless told otherwise: one process per core.
PROCESSES = 2
THREADS = 8


def sizes(default: Sequence[int]) -> list[int]:
    """Sizes from the command line (``1000 20_000 1e5`` all work), else ``default``."""
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    return [int(float(a.replace("_", ""))) for a in args] or list(default)


def option(name: str, default: str) -> str:
    """``--name=value`` from the command line, else ``default``."""
    prefix = f"--{name}="
    for arg in sys.argv[1:]:
        if arg.startswith(prefix):
            return arg[len(prefix) :]
    return default


@dataclass
class Infra:
    """A private RabbitMQ node and (optionally) PostgreSQL server in one temp directory."""

    with_postgres: bool = True
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="backlane-bench-", dir="/tmp")))
    #: Where PostgreSQL keeps its data when it is to outlive the run (its databases reused by the
    #: next run given the same directory); by default it lives in ``workdir`` and goes with it.
    #: The server itself is always stopped on exit.
    postgres_dir: Path | None = None
    rabbitmq: RabbitMQNode | None = None
    postgres: PostgresNode | None = None

    def __enter__(self) -> Infra:
        self.workdir.chmod(0o755)  # the postgres server user must be able to enter it
        self.rabbitmq = RabbitMQNode(self.workdir / "rabbitmq")
        self.rabbitmq.start()
        if self.with_postgres:
            if self.postgres_dir is not None:
                self.postgres_dir.mkdir(parents=True, exist_ok=True)
                self.postgres_dir.chmod(0o755)
            self.postgres = PostgresNode(self.postgres_dir or self.workdir / "pg")
            self.postgres.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.postgres is not None:
            self.postgres.stop()
        if self.rabbitmq is not None:
            self.rabbitmq.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def amqp_url(self) -> str:
        assert self.rabbitmq is not None
        return self.rabbitmq.amqp_url

    @property
    def postgres_pid(self) -> int | None:
        proc = getattr(self.postgres, "_proc", None)
        return proc.pid if proc is not None else None

    def has_database(self, name: str) -> bool:
        """Whether PostgreSQL already holds database ``name`` (a kept ``postgres_dir``)."""
        assert self.postgres is not None
        return self.postgres.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip() == "1"

    def database(self, kind: str, name: str) -> str:
        """A fresh, migrated database: ``kind`` is "postgresql" or "sqlite"."""
        if kind == "postgresql":
            assert self.postgres is not None, "Infra(with_postgres=True) is needed for PostgreSQL"
            self.postgres.drop_database(name)
            url = self.postgres.create_database(name)
        else:
            path = self.workdir / f"{name}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            url = f"sqlite:///{path}"
        upgrade(url)
        return url

    def stack(self, name: str, db_url: str, **env: str) -> Stack:
        """A stack whose processes share one env, as devtools.demo builds it."""
        return Stack(
            self.workdir / "logs" / name,
            {
                "BACKLANE_BROKER__URL": self.amqp_url,
                "BACKLANE_BROKER__MANAGEMENT_URL": self.rabbitmq.management_url if self.rabbitmq else "",
                "BACKLANE_DATABASE__URL": db_url,
                "BACKLANE_WORKER__METRICS_PORT": "0",
                **env,
            },
        )


def start_simulator(stack: Stack, *args: str) -> str:
    """The order API simulator as its own process; its URL is put into the stack's env."""
    _, url = stack.start_simulator(None, *args)
    stack.env["BACKLANE_ORDER_API__BASE_URL"] = url
    return url


def spawn(stack: Stack, name: str, argv: list[str], **env: str) -> ManagedProcess:
    """Any command in the stack's env, with benchmarks/ importable (the no-op actor lives here)."""
    path = os.pathsep.join(p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return stack._spawn(name, argv, {"PYTHONPATH": path, **env})


class Queues:
    """Passive declares on one connection: exact ready counts, no management-API lag."""

    def __init__(self, amqp_url: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        self.channel = self.connection.channel()

    def state(self, queue: str) -> tuple[int, int]:
        """(messages ready, consumers) of ``queue``."""
        method = self.channel.queue_declare(queue=queue, passive=True).method
        return method.message_count, method.consumer_count

    def purge(self, *queues: str) -> None:
        for queue in queues:
            with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):
                self.channel.queue_purge(queue)
            if not self.channel.is_open:
                self.channel = self.connection.channel()

    def wait_consumers(self, queue: str, count: int, proc: ManagedProcess, timeout: float = 60) -> None:
        """Until ``count`` consumers listen on ``queue`` (the worker is up and ready)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):
                if self.state(queue)[1] >= count:
                    return
            if not self.channel.is_open:
                self.channel = self.connection.channel()
            if not proc.alive:
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {count} consumers on {queue} after {timeout}s:\n{proc.log_tail()}")
            time.sleep(0.1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


def settled(db: Database) -> int:
    # Imported here: importing actors sets backlane up from the environment, which the
    # benchmarks fill in (the broker they started) after importing this module.
    from actors.orders.models import Order

    with db.transaction() as session:
        return int(
            session.scalar(select(func.count()).select_from(Order).where(Order.status.in_(["succeeded", "failed"])))
            or 0
        )


def wait_for(
    done: Callable[[], bool], *, timeout: float, interval: float = 0.05, procs: Sequence[ManagedProcess] = ()
) -> float:
    """Poll ``done`` until true; returns the monotonic time it first was. Fails loudly on timeout."""
    deadline = time.monotonic() + timeout
    while not done():
        for proc in procs:
            if not proc.alive:
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            logs = "\n".join(p.log_tail() for p in procs)
            raise TimeoutError(f"not done after {timeout}s\n{logs}")
        time.sleep(interval)
    return time.monotonic()


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, from /proc (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a dramatiq worker forks its worker processes)."""
    return descendants(pid)


def process_parts(worker: Any, simulator: Any, infra: Infra, database_kind: str) -> dict[str, int | None]:
    """The PID of each part of a run whose CPU a benchmark reports (None: not this run's)."""
    return {
        "worker": worker.proc.pid if worker.proc else None,
        "simulator": simulator.proc.pid if simulator.proc else None,
        "database": infra.postgres_pid if database_kind == "postgresql" else None,
        "rabbitmq": infra.rabbitmq.pid if infra.rabbitmq else None,
    }


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) used so far by ``pid`` and its descendants, living or reaped."""
    if pid is None:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for index, member in enumerate(process_tree(pid)):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            used = int(fields[11]) + int(fields[12])  # utime, stime
            if index == 0:
                used += int(fields[13]) + int(fields[14])  # children already reaped
            total += used / ticks
    return total


def load() -> str:
    """The machine's 1-minute load average: other work on the machine skews every number."""
    return f"{os.getloadavg()[0]:.1f}"


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], notes: Sequence[str] = ()) -> str:
    """A GitHub-flavoured markdown table, so the output can be pasted into docs/benchmarks.md."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = [f"### {title}", ""]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        lines.append("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
    lines.append("")
    lines.extend(f"- {note}" for note in notes)
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@contextlib.contextmanager
def stopping(stack: Stack) -> Iterator[Stack]:
    try:
        yield stack
    finally:
        stack.stop_all(timeout=15)


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    print(message, file=sys.stderr, flush=True)
