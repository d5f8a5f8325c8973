"""How a supervisor stops the worker: SIGTERM to its whole process group, or its parent killed.

Both ran the real ``dramatiq actors scheduler`` with orders in flight at a slow order API. On
the code before backlane/core/worker_process.py, the group SIGTERM ended in "Killing worker
process..." and exit 1; the parent's ``kill -9`` left its children alive, holding their unacked
orders until the lease (600 s by default) ran out.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from devtools.infra.process import alive, children_of
from devtools.stack import ManagedProcess
from tests.acceptance.conftest import System
from tests.waiting import wait_until


def _booted(worker: ManagedProcess, processes: int) -> bool:
    assert worker.alive, worker.log_tail()
    return worker.log_tail(400).count("is ready for action") >= processes


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_parent_killed_then_group_sigterm_lose_nothing_and_hold_nothing(system: System) -> None:
    """One run, two supervisor stops: the parent's kill -9, then the process group's SIGTERM."""
    system.sim("/_admin/config", {"latency_ms": 1000})
    system.create_orders(40)
    worker = system.stack.start_worker(processes=2, threads=4)
    wait_until(lambda: _booted(worker, 2), timeout=60, what="both worker processes booted")
    assert worker.proc is not None
    children = children_of(worker.proc.pid)
    assert len(children) == 2, children
    assert system.cli("trigger", "orders").returncode == 0
    wait_until(lambda: system.sim("/_admin/stats")["orders"]["created"] >= 2, timeout=60, what="orders in flight")

    os.kill(worker.proc.pid, signal.SIGKILL)  # the main PID only, as an OOM kill or a supervisor would
    worker.proc.wait(10)
    wait_until(lambda: not any(alive(c) for c in children), timeout=10, what="the children gone with their parent")
    assert system.settled() < 40, "the parent must be killed mid-run"

    # What the dead children held is back in the queue at once: the next worker takes it now,
    # not after the 600 s lease.
    second = system.stack.start_worker(processes=2, threads=4)
    wait_until(lambda: _booted(second, 2), timeout=60, what="the second worker booted")
    settled_before = system.settled()
    wait_until(lambda: system.settled() >= settled_before + 4, timeout=60, what="orders in flight again")
    assert second.proc is not None
    os.killpg(second.proc.pid, signal.SIGTERM)  # what systemd's default KillMode=control-group sends
    assert second.proc.wait(60) == 0, second.log_tail(60)
    log = second.log_tail(400)
    assert "Killing worker process" not in log, log
    assert "the process group's copy" in log, log

    system.sim("/_admin/config", {"latency_ms": 20})
    started = time.monotonic()
    system.stack.start_worker(processes=1, threads=8)
    wait_until(lambda: system.settled() == 40, timeout=90, what="every order settled by the third worker")
    assert time.monotonic() - started < 90, "recovery must not wait out the 600 s lease"
    assert system.creations() == [1] * 40
