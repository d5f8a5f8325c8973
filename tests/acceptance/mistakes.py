"""Every mistake of issue 12's "Why", run for real: the line it prints, its exit status, how long.

Used two ways: ``tests/acceptance/test_mistakes.py`` runs each case against the
session's RabbitMQ node and asserts on it, and ``python -m tests.acceptance.mistakes``
starts its own private RabbitMQ node, runs them all and prints the table of the
closing note (mistake → line, exit status, seconds).

Each case is the command an operator types (``backlane ...``, ``dramatiq actors
scheduler``, ``periodiq scheduler``) in a process of its own, in an empty working
directory, with the environment the mistake needs.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from backlane.db.migrate import upgrade
from devtools.infra.ports import free_port
from devtools.stack import SOURCE_ROOT, clock_command, worker_command

#: Every command answers within this long (issue 12).
LIMIT_SECONDS = 5.0


@dataclass
class Place:
    """What the cases run against: a real broker, a dead port, databases in every state."""

    amqp_url: str
    management_url: str
    workdir: Path

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dead_amqp_url = f"amqp://guest:S3cret-dead@127.0.0.1:{free_port()}/%2F"
        self.dead_management_url = f"http://127.0.0.1:{free_port()}"
        self.dead_postgres_url = f"postgresql://backlane:S3cret-pg@127.0.0.1:{free_port()}/backlane"
        self.unmigrated = self.workdir / "unmigrated.db"
        if not self.unmigrated.exists():
            sqlite3.connect(self.unmigrated).close()  # a database that is there, without backlane's tables
        self.migrated = self.workdir / "migrated.db"
        if not self.migrated.exists():
            upgrade(f"sqlite:///{self.migrated}")

    def classic_deployment_url(self) -> str:
        """A vhost whose queues backlane declared as classic queues, as an existing deployment's
        are (made once: the management API, then ``backlane declare-queues``)."""
        vhost = "mistakes-classic"
        url = f"{self.amqp_url.rsplit('/', 1)[0]}/{vhost}"
        if not (self.workdir / vhost).exists():
            auth = ("guest", "guest")
            httpx.put(f"{self.management_url}/api/vhosts/{vhost}", auth=auth, timeout=10).raise_for_status()
            everything = {"configure": ".*", "write": ".*", "read": ".*"}
            httpx.put(f"{self.management_url}/api/permissions/{vhost}/guest", json=everything, auth=auth, timeout=10)
            classic = self.env(BACKLANE_BROKER__URL=url, BACKLANE_BROKER__QUEUE_TYPE="classic")
            subprocess.run(backlane("declare-queues"), env=classic, capture_output=True, check=True, timeout=60)
            (self.workdir / vhost).touch()
        return url

    def without_tracing_extra(self) -> str:
        """A PYTHONPATH on which OpenTelemetry cannot be imported, as without ``backlane[tracing]``
        (a package shadowing it that raises what a missing package raises)."""
        shadow = self.workdir / "no-tracing-extra"
        package = shadow / "opentelemetry"
        if not package.exists():
            package.mkdir(parents=True)
            (package / "__init__.py").write_text(
                "raise ModuleNotFoundError(\"No module named 'opentelemetry'\", name='opentelemetry')\n"
            )
        return os.pathsep.join([str(shadow), str(SOURCE_ROOT), os.environ.get("PYTHONPATH", "")])

    def read_only_user_url(self) -> str:
        """A RabbitMQ user that may connect but not declare a queue (made once)."""
        user = "mistakes-reader"
        if not (self.workdir / user).exists():
            auth = ("guest", "guest")
            body = {"password": "S3cret-reader", "tags": ""}
            httpx.put(f"{self.management_url}/api/users/{user}", json=body, auth=auth, timeout=10).raise_for_status()
            nothing = {"configure": "^$", "write": "^$", "read": ".*"}
            httpx.put(f"{self.management_url}/api/permissions/%2F/{user}", json=nothing, auth=auth, timeout=10)
            (self.workdir / user).touch()
        return self.amqp_url.replace("guest:guest@", f"{user}:S3cret-reader@")

    def env(self, **overrides: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("BACKLANE_")}
        base.update(
            {
                "BACKLANE_BROKER__URL": self.amqp_url,
                "BACKLANE_BROKER__MANAGEMENT_URL": self.management_url,
                "BACKLANE_DATABASE__URL": f"sqlite:///{self.migrated}",
                "BACKLANE_WORKER__METRICS_PORT": "0",
                "PYTHONPATH": os.pathsep.join(p for p in (str(SOURCE_ROOT), os.environ.get("PYTHONPATH", "")) if p),
            }
        )
        base.update(overrides)
        return base


@dataclass
class Outcome:
    status: int
    seconds: float
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def lines_with(self, text: str) -> list[str]:
        return [line for line in self.output.splitlines() if text in line]


def backlane(*args: str) -> list[str]:
    return [sys.executable, "-m", "backlane.cli", *args]


@dataclass
class Mistake:
    key: str
    #: The mistake, as the issue tells it.
    what: str
    argv: Callable[[Place], list[str]]
    env: Callable[[Place], dict[str, str]]
    status: int
    #: Text the one line must contain (the setting, the fix).
    names: list[str]
    #: A long-running process (worker, clock): its line is a log line among dramatiq's own.
    process: bool = False
    #: More text the output must hold somewhere.
    extra: list[str] = field(default_factory=list)

    #: argparse's usage lines come before the error line.
    usage: bool = False

    @property
    def one_stderr_line(self) -> bool:
        """A command's error is its only line on stderr (status reports on stdout instead)."""
        return not self.process and not self.usage and self.argv(_NOWHERE)[3:4] != ["status"]

    def run(self, place: Place, cwd: Path) -> Outcome:
        cwd.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        result = subprocess.run(
            self.argv(place),
            env=self.env(place),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return Outcome(result.returncode, time.monotonic() - started, result.stdout, result.stderr)

    def line(self, outcome: Outcome) -> str:
        """The one line that explains it."""
        found = outcome.lines_with(self.names[0])
        text = found[0] if found else (outcome.stderr.strip().splitlines() or ["<nothing>"])[-1]
        return re.sub(r"^\[[^]]*\] \[PID \d+\] \[\w+\] ", "", text)


class _Nowhere:
    """Stands in for a place when only the argv's shape is asked."""

    def __getattr__(self, name: str) -> str:
        return ""


_NOWHERE: Place = _Nowhere()  # type: ignore[assignment]


def _worker(processes: int = 2) -> Callable[[Place], list[str]]:
    return lambda place: worker_command(processes, 1)


MISTAKES = [
    Mistake(
        "declare-queues-broker-down",
        "RabbitMQ unreachable: `backlane declare-queues`",
        lambda p: backlane("declare-queues"),
        lambda p: p.env(BACKLANE_BROKER__URL=p.dead_amqp_url),
        1,
        ["BACKLANE_BROKER__URL", "unreachable"],
    ),
    Mistake(
        "trigger-broker-down",
        "RabbitMQ unreachable: `backlane trigger orders`",
        lambda p: backlane("trigger", "orders"),
        lambda p: p.env(BACKLANE_BROKER__URL=p.dead_amqp_url),
        1,
        ["BACKLANE_BROKER__URL", "unreachable"],
    ),
    Mistake(
        "dead-letters-broker-down",
        "RabbitMQ unreachable: `backlane dead-letters list`",
        lambda p: backlane("dead-letters", "list"),
        lambda p: p.env(BACKLANE_BROKER__URL=p.dead_amqp_url),
        1,
        ["BACKLANE_BROKER__URL", "unreachable"],
    ),
    Mistake(
        "broker-password",
        "RabbitMQ refuses the password: `backlane trigger orders`",
        lambda p: backlane("trigger", "orders"),
        lambda p: p.env(BACKLANE_BROKER__URL=p.amqp_url.replace("guest:guest@", "guest:Wr0ng-pass@")),
        2,
        ["BACKLANE_BROKER__URL", "ACCESS_REFUSED"],
    ),
    Mistake(
        "worker-bad-setting",
        "a bad setting given to the worker (`dramatiq actors scheduler --processes 2`)",
        _worker(),
        lambda p: p.env(BACKLANE_ORDERS__LEASE_SECONDS="-1"),
        78,
        ["BACKLANE_ORDERS__LEASE_SECONDS", "does not start"],
        process=True,
    ),
    Mistake(
        "worker-queue-type",
        "a worker set to quorum queues against a deployment's classic ones (`dramatiq actors scheduler --processes 2`)",
        _worker(),
        lambda p: p.env(BACKLANE_BROKER__URL=p.classic_deployment_url(), BACKLANE_BROKER__QUEUE_TYPE="quorum"),
        78,
        ["exists on RabbitMQ as a classic queue", "BACKLANE_BROKER__QUEUE_TYPE is quorum", "does not start"],
        process=True,
    ),
    Mistake(
        "worker-no-permission",
        "a worker whose RabbitMQ user may not declare its queues",
        _worker(),
        lambda p: p.env(BACKLANE_BROKER__URL=p.read_only_user_url()),
        78,
        ["BACKLANE_BROKER__URL", "ACCESS_REFUSED"],
        process=True,
    ),
    Mistake(
        "worker-bad-log-format",
        "a log format that is not one (`BACKLANE_LOG_FORMAT=yaml`) given to the worker",
        _worker(),
        lambda p: p.env(BACKLANE_LOG_FORMAT="yaml"),
        78,
        ["BACKLANE_LOG_FORMAT", "does not start", "'text' or 'json'"],
        process=True,
    ),
    Mistake(
        "command-bad-log-format",
        "a log format that is not one (`BACKLANE_LOG_FORMAT=yaml`) given to `backlane pipelines`",
        lambda p: backlane("pipelines"),
        lambda p: p.env(BACKLANE_LOG_FORMAT="yaml"),
        2,
        ["BACKLANE_LOG_FORMAT", "'text' or 'json'"],
    ),
    Mistake(
        "worker-tracing-extra-missing",
        "tracing turned on in a worker installed without the `tracing` extra",
        _worker(),
        lambda p: p.env(BACKLANE_TRACING__ENABLED="true", PYTHONPATH=p.without_tracing_extra()),
        78,
        ["pip install 'backlane[tracing]'", "BACKLANE_TRACING__ENABLED", "does not start"],
        process=True,
    ),
    Mistake(
        "clock-bad-setting",
        "a bad setting given to the clock (`periodiq scheduler`)",
        lambda p: clock_command(),
        lambda p: p.env(BACKLANE_RETRIES__MAX_RETRIES="many"),
        78,
        ["BACKLANE_RETRIES__MAX_RETRIES", "does not start"],
        process=True,
    ),
    Mistake(
        "clock-bad-tick",
        "a bad cron tick given to the clock (`BACKLANE_ORDERS__TICK='*/0 * * * *'`)",
        lambda p: clock_command(),
        lambda p: p.env(BACKLANE_ORDERS__TICK="*/0 * * * *"),
        78,
        ["BACKLANE_ORDERS__TICK", "does not start"],
        process=True,
    ),
    Mistake(
        "worker-bad-tick",
        "a bad cron tick given to the worker (`BACKLANE_CATALOG__TICK='61 * * * *'`)",
        _worker(),
        lambda p: p.env(BACKLANE_CATALOG__TICK="61 * * * *"),
        78,
        ["BACKLANE_CATALOG__TICK", "out of range"],
        process=True,
    ),
    Mistake(
        "migrate-nonsense-url",
        "a nonsense database URL with `backlane migrate`",
        lambda p: backlane("migrate"),
        lambda p: p.env(BACKLANE_DATABASE__URL="nonsense"),
        2,
        ["BACKLANE_DATABASE__URL", "not a database URL"],
    ),
    Mistake(
        "migrate-postgres-down",
        "`backlane migrate` with PostgreSQL unreachable",
        lambda p: backlane("migrate"),
        lambda p: p.env(BACKLANE_DATABASE__URL=p.dead_postgres_url),
        1,
        ["BACKLANE_DATABASE__URL", "unreachable"],
    ),
    Mistake(
        "worker-before-migrate",
        "worker started before `backlane migrate` (database reachable, no schema)",
        _worker(),
        lambda p: p.env(BACKLANE_DATABASE__URL=f"sqlite:///{p.unmigrated}"),
        78,
        ["backlane migrate", "does not start"],
        process=True,
    ),
    Mistake(
        "clock-before-migrate",
        "clock started before `backlane migrate`",
        lambda p: clock_command(),
        lambda p: p.env(BACKLANE_DATABASE__URL=f"sqlite:///{p.unmigrated}"),
        78,
        ["backlane migrate", "does not start"],
        process=True,
    ),
    Mistake(
        "trigger-before-migrate",
        "`backlane trigger catalog sales` before `backlane migrate`",
        lambda p: backlane("trigger", "catalog", "sales"),
        lambda p: p.env(BACKLANE_DATABASE__URL=f"sqlite:///{p.unmigrated}"),
        1,
        ["backlane migrate", "no backlane schema"],
    ),
    Mistake(
        "status-not-migrated",
        "`backlane status` on a reachable database without the schema",
        lambda p: backlane("status"),
        lambda p: p.env(BACKLANE_DATABASE__URL=f"sqlite:///{p.unmigrated}"),
        1,
        ["backlane migrate", "no backlane schema"],
        extra=["database not migrated"],
    ),
    Mistake(
        "status-postgres-down",
        "`backlane status` with the database unreachable",
        lambda p: backlane("status"),
        lambda p: p.env(BACKLANE_DATABASE__URL=p.dead_postgres_url),
        1,
        ["BACKLANE_DATABASE__URL", "unreachable"],
        extra=["HEALTH unhealthy"],
    ),
    Mistake(
        "status-management-down",
        "`backlane status` with the management API unreachable",
        lambda p: backlane("status"),
        lambda p: p.env(BACKLANE_BROKER__MANAGEMENT_URL=p.dead_management_url),
        1,
        ["BACKLANE_BROKER__MANAGEMENT_URL", "queue depths unknown"],
    ),
    Mistake(
        "status-empty-folder",
        "`backlane status` in an empty folder (default SQLite URL, no file)",
        lambda p: backlane("status"),
        lambda p: {k: v for k, v in p.env().items() if k != "BACKLANE_DATABASE__URL"},
        1,
        ["no database file", "backlane migrate"],
    ),
    Mistake(
        "dead-letters-unknown-queue",
        "`backlane dead-letters list --queue nosuch`",
        lambda p: backlane("dead-letters", "list", "--queue", "nosuch"),
        lambda p: p.env(),
        2,
        ["'nosuch'", "orders_inbox"],
    ),
    Mistake(
        "purge-no-terminal",
        "`backlane dead-letters purge` with no terminal",
        lambda p: backlane("dead-letters", "purge"),
        lambda p: p.env(),
        2,
        ["--yes", "no terminal"],
    ),
    Mistake(
        "trigger-unknown-pipeline",
        "`backlane trigger nosuch`",
        lambda p: backlane("trigger", "nosuch"),
        lambda p: p.env(),
        2,
        ["'nosuch'", "registered: catalog"],
    ),
    Mistake(
        "trigger-unknown-section",
        "`backlane trigger catalog nosuch`",
        lambda p: backlane("trigger", "catalog", "nosuch"),
        lambda p: p.env(),
        2,
        ["'nosuch'", "known: categories"],
    ),
]

for _option, _value in (("--threads", "0"), ("--orders", "-5")):
    MISTAKES.append(
        Mistake(
            f"demo{_option}{_value}",
            f"`scripts/demo {_option} {_value}`",
            lambda p, o=_option, v=_value: [sys.executable, "-m", "devtools.demo", o, v],
            lambda p: p.env(),
            2,
            [f"argument {_option}", "error:"],
            usage=True,
        )
    )

BY_KEY = {m.key: m for m in MISTAKES}


def check(mistake: Mistake, outcome: Outcome) -> list[str]:
    """What is wrong with how ``mistake`` ended (empty: right)."""
    wrong = []
    if outcome.status != mistake.status:
        wrong.append(f"exit status {outcome.status}, expected {mistake.status}")
    if outcome.seconds >= LIMIT_SECONDS:
        wrong.append(f"took {outcome.seconds:.1f}s")
    lines = outcome.lines_with(mistake.names[0])
    if len(lines) != 1:
        wrong.append(f"{len(lines)} lines name {mistake.names[0]!r}, expected one")
    elif not all(text in lines[0] for text in mistake.names[1:]):
        wrong.append(f"the line lacks {mistake.names[1:]}: {lines[0]}")
    for text in mistake.extra:
        if text not in outcome.output:
            wrong.append(f"output lacks {text!r}")
    if "Traceback" in outcome.output or "[pika" in outcome.output or "S3cret" in outcome.output:
        wrong.append("a traceback, pika's noise or a password in the output")
    if mistake.one_stderr_line and outcome.stderr.count("\n") != 1:
        wrong.append(f"stderr has {outcome.stderr.count(chr(10))} lines, expected 1")
    return wrong


def interruptions(place: Place, base: Path) -> list[tuple[str, str, str, float]]:
    """(what, last line, exit status, seconds after Ctrl-C) of Ctrl-C where the issue saw tracebacks,
    and the second worker on one host: (what, its line, "runs on", seconds to say it)."""
    from tests.acceptance.test_status_health import _pty_run

    rows = []
    cases = [
        ("Ctrl-C in `backlane status --watch`", backlane("status", "--watch", "1"), 3.0),
        ("Ctrl-C at the `dead-letters purge` prompt", backlane("dead-letters", "purge"), 3.0),
        ("Ctrl-C while the demo starts RabbitMQ", [sys.executable, "-m", "devtools.demo"], 3.0),
    ]
    for what, argv, after in cases:
        env = (
            place.env() if "devtools.demo" not in argv else {k: v for k, v in place.env().items() if "BROKER" not in k}
        )
        cwd = base / "ctrl-c" / str(len(rows))
        cwd.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        code, output = _pty_run(argv, env, seconds=after)
        took = time.monotonic() - started - after
        lines = [line.strip() for line in output.replace("\r", "").splitlines() if line.strip()]
        last = lines[-1] if lines else ""
        note = " (traceback!)" if "Traceback" in output else ""
        rows.append((what, (last[-120:] or "(nothing)") + note, str(code), took))

    from devtools.stack import Stack
    from tests.waiting import wait_until

    port = free_port()
    stack = Stack(base / "workers", place.env(BACKLANE_WORKER__METRICS_PORT=str(port)))
    try:
        stack.start_worker(processes=1, threads=1)
        import httpx

        def answers() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code in (200, 503)
            except httpx.HTTPError:
                return False

        wait_until(answers, timeout=60, what="the first worker's endpoint")
        started = time.monotonic()
        second = stack.start_worker(processes=1, threads=1)
        wait_until(lambda: "is taken" in second.log_tail(100), timeout=60, what="the second worker's warning")
        took = time.monotonic() - started
        line = next(line for line in second.log_tail(100).splitlines() if "is taken" in line)
        state = "runs on" if second.alive else f"exited {second.proc.returncode if second.proc else '?'}"
        rows.append(
            (
                "two workers on one host, same metrics port",
                re.sub(r"^\[[^]]*\] \[PID \d+\] \[\w+\] ", "", line),
                state,
                took,
            )
        )
    finally:
        stack.stop_all(timeout=15)
    return rows


def main() -> int:
    """Start a private RabbitMQ node, run every mistake, print the table."""
    import tempfile

    from devtools.infra.rabbitmq import RabbitMQNode

    base = Path(tempfile.mkdtemp(prefix="backlane-mistakes-"))
    node = RabbitMQNode(base / "rabbitmq")
    node.start()
    try:
        place = Place(node.amqp_url, node.management_url, base / "data")
        print("| mistake | line printed now | exit | seconds |")
        print("|---|---|---|---|")
        failures = 0
        for mistake in MISTAKES:
            outcome = mistake.run(place, base / "cwd" / mistake.key)
            wrong = check(mistake, outcome)
            failures += bool(wrong)
            line = mistake.line(outcome).replace("|", "\\|")
            note = f" **{'; '.join(wrong)}**" if wrong else ""
            print(f"| {mistake.what} | `{line}`{note} | {outcome.status} | {outcome.seconds:.1f} |", flush=True)
        for what, line, status, took in interruptions(place, base):
            print(f"| {what} | `{line}` | {status} | {took:.1f} |", flush=True)
        return 1 if failures else 0
    finally:
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
