"""The running system as processes: simulator, workers and the clock.

The demo and the acceptance tests start the very commands an operator runs
(``dramatiq actors scheduler``, ``periodiq scheduler``,
``python -m devtools.simulator``), each in its own process group with its log in
a file, so they can be stopped gracefully, or killed as a crash would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from devtools.infra.ports import free_port
from devtools.infra.process import die_with_parent, signal_group, stop_group, tail

#: The source checkout holding ``devtools`` (not installed): its processes import from here.
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def _bin(name: str) -> str:
    """A console script installed beside the running interpreter."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def worker_command(processes: int = 1, threads: int = 8) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "actors",
        "scheduler",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
    ]


def clock_command() -> list[str]:
    return [_bin("periodiq"), "scheduler"]


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    #: The host it runs on, for a multi-host run (:mod:`devtools.cluster`); "" = this machine.
    host: str = ""
    #: Its working directory (None: the caller's).
    cwd: Path | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (let work in flight finish or go back to its queue), SIGKILL after ``timeout``."""
        if self.proc is not None:
            stop_group(self.proc, signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the whole group, as a crash or an OOM kill would."""
        if self.proc is not None:
            signal_group(self.proc, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)


@dataclass(frozen=True)
class Placement:
    """Where a process runs: a host of a multi-host run (a network namespace, see
    :mod:`devtools.cluster`), its address, and the command prefix that runs a program there."""

    host: str
    address: str
    prefix: list[str]


@dataclass
class Stack:
    """Environment shared by every process of one running system."""

    workdir: Path
    env: dict[str, str]
    processes: list[ManagedProcess] = field(default_factory=list)

    def _spawn(
        self,
        name: str,
        argv: list[str],
        extra_env: dict[str, str] | None = None,
        on: Placement | None = None,
        source: Path | None = None,
    ) -> ManagedProcess:
        """``source``: run another checkout's code (e.g. the previous release, :mod:`devtools.upgrade`)
        with this interpreter: that tree first on the path and as the working directory."""
        env = {**os.environ, **self.env, **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
        root = str(source or SOURCE_ROOT)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        index = sum(1 for p in self.processes if p.name.startswith(name))
        prefix, host = (on.prefix, on.host) if on is not None else ([], "")
        log = self.workdir / f"{name}-{index}.log"
        proc = ManagedProcess(f"{name}-{index}", [*prefix, *argv], env, log, host=host, cwd=source).start()
        self.processes.append(proc)
        return proc

    def start_simulator(
        self, port: int | None = None, *args: str, on: Placement | None = None
    ) -> tuple[ManagedProcess, str]:
        port = port or (8085 if on is not None else free_port())
        address = on.address if on is not None else "127.0.0.1"
        argv = [sys.executable, "-m", "devtools.simulator", "--host", address, "--port", str(port), *args]
        proc = self._spawn("simulator", argv, on=on)
        url = f"http://{address}:{port}"
        _wait_http(f"{url}/_admin/health", proc)
        return proc, url

    def start_worker(
        self,
        processes: int = 1,
        threads: int = 8,
        extra_env: dict[str, str] | None = None,
        on: Placement | None = None,
        source: Path | None = None,
    ) -> ManagedProcess:
        return self._spawn("worker", worker_command(processes, threads), extra_env, on, source)

    def start_clock(
        self, extra_env: dict[str, str] | None = None, on: Placement | None = None, source: Path | None = None
    ) -> ManagedProcess:
        return self._spawn("clock", clock_command(), extra_env, on, source)

    def start_dashboard(
        self, port: int | None = None, extra_env: dict[str, str] | None = None
    ) -> tuple[ManagedProcess, str]:
        """``backlane dashboard`` on loopback; its URL once it answers."""
        port = port or free_port()
        argv = [sys.executable, "-m", "backlane.cli", "dashboard", "--host", "127.0.0.1", "--port", str(port)]
        proc = self._spawn("dashboard", argv, extra_env)
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/static/dashboard.css", proc, timeout=60)
        return proc, url

    def stop_all(self, timeout: float = 30) -> None:
        """Stop the workers, clocks and dashboards together, then the simulators they call.

        Together, not one after the other: each takes seconds to drain and exit (a worker's
        consumers and threads notice the stop within Dramatiq's worker timeout), and the tests
        and the demo stop a system each time they end."""
        simulators = [p for p in self.processes if p.name.startswith("simulator")]
        for group in ([p for p in self.processes if p not in simulators], simulators):
            with ThreadPoolExecutor(max_workers=max(1, len(group))) as pool:
                for stopped in [pool.submit(proc.stop, timeout) for proc in group]:
                    stopped.result()


def _wait_http(url: str, proc: ManagedProcess, timeout: float = 20) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout}s:\n{proc.log_tail()}")
