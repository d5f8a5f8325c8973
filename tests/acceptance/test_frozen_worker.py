"""A frozen worker process (SIGSTOP: what a long GC pause, a suspended VM or a debugger does)
is dropped by RabbitMQ within a few heartbeats, and what it held goes to a live worker.

Before ``BACKLANE_BROKER__HEARTBEAT_SECONDS`` every connection took RabbitMQ's proposal of
60 s, so a frozen process kept its unacked messages for 60 to 120 s (issue 27: orders.DQ
unacked 25 -> 275 over 150 s while a live worker sat idle). Here the heartbeat is 2 s: the
frozen worker's connections are gone within about three of them, a live worker settles what it
held while it is still frozen, and once it is woken it does no side effect twice. The live
worker's items take longer than two heartbeats meanwhile, and its consumers keep their
connections: Dramatiq's consumer threads answer heartbeats whatever the worker threads do.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.infra.process import live_group_members
from devtools.stack import ManagedProcess
from tests.acceptance.conftest import System
from tests.waiting import wait_until

HEARTBEAT = 2
ORDERS = 8
#: The order API's latency while both workers hold orders: longer than two heartbeats, so a
#: live worker whose consumers did not answer heartbeats during an item would be dropped too.
SLOW_MS = 5000


def _sockets(pids: list[int]) -> set[tuple[int, int]]:
    """(local port, remote port) of each TCP socket ``pids`` hold: with the remote port, a
    connection of theirs to RabbitMQ is told from another process's that got the same local
    port for another destination."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                found.add((int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)))
    return found


def _management(system: System, path: str) -> Any:
    response = httpx.get(f"{system.rabbitmq.management_url}/api/{path}", auth=("guest", "guest"), timeout=10)
    response.raise_for_status()
    return response.json()


def _connections_of(system: System, worker: ManagedProcess) -> set[str]:
    """Names of the AMQP connections ``worker``'s processes hold now."""
    assert worker.proc is not None
    sockets = _sockets(live_group_members(worker.proc.pid))
    return {c["name"] for c in _management(system, "connections") if (c.get("peer_port"), c.get("port")) in sockets}


def _channel_of(consumer: dict[str, Any]) -> dict[str, Any]:
    """A consumer's channel details, or ``{}``: the management API reports ``[]`` until it has
    collected the channel's stats (a consumer seconds old), so a poll must not index into it."""
    details = consumer.get("channel_details")
    return details if isinstance(details, dict) else {}


def _unacked_on(system: System, connections: set[str], queue: str) -> int:
    """Messages of ``queue`` delivered, unacked, to a consumer on one of ``connections``."""
    consuming = {
        _channel_of(c)["name"]
        for c in _management(system, "consumers")
        if c["queue"]["name"] == queue and _channel_of(c).get("connection_name") in connections
    }
    return sum(
        ch.get("messages_unacknowledged", 0) for ch in _management(system, "channels") if ch["name"] in consuming
    )


def _consumer_connections(system: System, connections: set[str]) -> set[str]:
    return {
        _channel_of(c)["connection_name"]
        for c in _management(system, "consumers")
        if _channel_of(c).get("connection_name") in connections
    }


def _booted(worker: ManagedProcess) -> bool:
    assert worker.alive, worker.log_tail()
    return "is ready for action" in worker.log_tail(400)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_frozen_worker_dropped_within_heartbeats_and_nothing_twice(system: System) -> None:
    system.stack.env["BACKLANE_BROKER__HEARTBEAT_SECONDS"] = str(HEARTBEAT)
    system.sim("/_admin/config", {"latency_ms": SLOW_MS})
    system.create_orders(ORDERS)
    frozen = system.stack.start_worker(processes=1, threads=2)
    live = system.stack.start_worker(processes=1, threads=2)
    wait_until(lambda: _booted(frozen) and _booted(live), timeout=60, what="both workers booted")
    live_consumers = wait_until(
        lambda: _consumer_connections(system, _connections_of(system, live)), timeout=20, what="live consumers"
    )

    assert system.cli("trigger", "orders").returncode == 0
    held = wait_until(
        lambda: (
            _connections_of(system, frozen) if _unacked_on(system, _connections_of(system, frozen), "orders") else None
        ),
        timeout=30,
        what="the first worker holding unacked orders",
    )
    assert held and frozen.proc is not None
    os.killpg(frozen.proc.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        system.sim("/_admin/config", {"latency_ms": 20})  # the calls made from now on are quick
        wait_until(
            lambda: not (held & {c["name"] for c in _management(system, "connections")}),
            timeout=3 * HEARTBEAT + 5,
            interval=0.2,
            what="RabbitMQ closing the frozen worker's connections",
        )
        dropped = time.monotonic() - stopped
        # What it held is redelivered to the live worker, and settled while it is still frozen.
        wait_until(lambda: system.settled() == ORDERS, timeout=30, what="every order settled by the live worker")
        settled = time.monotonic() - stopped
    finally:
        os.killpg(frozen.proc.pid, signal.SIGCONT)

    # Woken, the frozen worker finds its connections gone, finishes the calls it was making and
    # reconnects: its late outcomes place nothing twice and fail nothing.
    wait_until(lambda: _connections_of(system, frozen), timeout=30, what="the woken worker reconnected")
    wait_until(
        lambda: "delivered on a connection that has closed" in frozen.log_tail(400),
        timeout=30,
        what="the woken worker's late outcomes left to RabbitMQ",
    )
    assert system.creations() == [1] * ORDERS
    assert system.settled() == ORDERS
    assert system.sim("/_admin/stats")["orders"]["created"] == ORDERS
    assert _management(system, "queues/%2F/orders.XQ")["messages"] == 0
    # The live worker's items took longer than two heartbeats: its consumers kept their connections.
    assert _consumer_connections(system, _connections_of(system, live)) >= live_consumers
    assert "connection error" not in live.log_tail(400).lower(), live.log_tail(60)
    print(f"frozen worker dropped {dropped:.1f} s after SIGSTOP, every order settled {settled:.1f} s after it")
