"""What the demo starts and stops: RabbitMQ, the simulators, the worker's queues, the dashboard,
and the lock that keeps one demo per folder. Processes run through :class:`devtools.stack.Stack`,
RabbitMQ nodes through :mod:`devtools.infra.rabbitmq`; this module only decides which and when.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from backlane.operations.health import check_broker
from backlane.settings import get_settings
from devtools.demo.errors import DemoError
from devtools.demo.part import SimulatorUse
from devtools.infra.ports import free_port, is_listening
from devtools.infra.rabbitmq import (
    MissingRabbitMQ,
    RabbitMQNode,
    RabbitMQStartError,
    find_rabbitmq_server,
    install_rabbitmq_server,
)
from devtools.stack import Stack

DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
#: The dashboard's default port (BACKLANE_DASHBOARD__PORT); a free one when it is taken.
DASHBOARD_PORT = 8090
#: Every simulator's seed, so that two runs fail the same calls.
SIMULATOR_SEED = "7"


@dataclass
class Running:
    """What the demo started, so that it is all stopped however the demo ends."""

    node: RabbitMQNode | None = None
    stack: Stack | None = None
    lock: IO[str] | None = None
    #: The private S3 server of ``--storage s3``.
    s3: Any = None

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop_all(timeout=20)
        if self.node is not None:
            self.node.stop()
        if self.s3 is not None:
            self.s3.stop()


def lock(workdir: Path) -> IO[str]:
    """One demo per folder: a second one would delete the first one's database under it."""
    import fcntl

    workdir.mkdir(parents=True, exist_ok=True)
    held = (workdir / "demo.lock").open("a+")
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        held.seek(0)
        raise DemoError(
            f"another demo is running in this folder (pid {held.read().strip() or '?'}); stop it first (Ctrl-C)"
        ) from None
    held.truncate(0)
    held.write(str(os.getpid()))
    held.flush()
    return held  # held until this process ends


def amqp_reachable(url: str) -> bool:
    return check_broker(url)["health"] == "healthy"


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


@dataclass(frozen=True)
class StartedSimulator:
    group: str
    url: str
    plays: tuple[str, ...]


def start_simulators(stack: Stack, uses: Sequence[SimulatorUse]) -> list[StartedSimulator]:
    """One simulator per group the parts name, in the order first named, with all their arguments."""
    groups: dict[str, list[SimulatorUse]] = {}
    for use in uses:
        groups.setdefault(use.group, []).append(use)
    started = []
    for group, members in groups.items():
        args = [arg for use in members for arg in use.args]
        _, url = stack.start_simulator(None, *args, "--seed", SIMULATOR_SEED)
        started.append(StartedSimulator(group, url, tuple(use.plays for use in members if use.plays)))
    return started


def declare_queues(env: dict[str, str]) -> None:
    """Declare the queues as a deployment would, so that raw publishes can route."""
    result = subprocess.run(
        [sys.executable, "-m", "backlane.cli", "declare-queues"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise DemoError(f"`backlane declare-queues` failed: {result.stderr.strip()}")


def start_dashboard(stack: Stack) -> str:
    """``backlane dashboard`` on its default port (8090), or on a free one when that is taken."""
    port = DASHBOARD_PORT if not is_listening(DASHBOARD_PORT) else free_port()
    _, url = stack.start_dashboard(port, {"BACKLANE_DASHBOARD__REFRESH_SECONDS": "2"})
    return url


def dispose(workdir: Path, folders: Sequence[str]) -> None:
    """Remove what a previous run left in these folders of the demo's directory."""
    for folder in folders:
        shutil.rmtree(workdir / folder, ignore_errors=True)
