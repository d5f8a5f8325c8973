"""`backlane status` and the worker's /health tell the truth, on the real broker and processes.

Unknown is unknown (``?`` on screen, ``null`` in JSON), never 0 or healthy; an
unreachable database makes health unhealthy; disabled pipelines and sections are
"disabled" and make nothing unhealthy; ``--watch`` fits 80x24 and Ctrl-C ends it
with 130 and no traceback; several workers on one host share a port without a
traceback, the second saying so in one line; the endpoint listens on loopback.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import httpx
import pytest

from devtools.infra.ports import free_port
from tests.acceptance.conftest import System
from tests.waiting import wait_until

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def status_json(system: System, **env: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    saved = dict(system.stack.env)
    system.stack.env.update(env)
    try:
        result = system.cli("status", "--json")
    finally:
        system.stack.env.clear()
        system.stack.env.update(saved)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_unknown_queue_depths_and_an_unreachable_database_are_never_zero_or_healthy(system: System) -> None:
    code, status = status_json(system, BACKLANE_BROKER__MANAGEMENT_URL=f"http://127.0.0.1:{free_port()}")
    assert code == 1
    orders = next(p for p in status["pipelines"] if p["name"] == "orders")
    assert set(orders["queue_depth"].values()) == {None}, "depths the management API did not give are unknown"
    assert orders["items"] is not None, "the database was readable"
    assert any("BACKLANE_BROKER__MANAGEMENT_URL" in e for e in status["errors"])
    text = system.cli("status", "--watch", "0").stderr
    assert "above 0" in text

    dead_db = f"postgresql://backlane:pw@127.0.0.1:{free_port()}/backlane"
    code, status = status_json(system, BACKLANE_DATABASE__URL=dead_db)
    assert code == 1
    assert status["health"] == "unhealthy"
    assert status["database"] == {"health": "unhealthy", "state": "unreachable", "error": status["database"]["error"]}
    for pipeline in status["pipelines"]:
        assert pipeline["items"] is None and pipeline["health"] is None, pipeline
    saved = dict(system.stack.env)
    system.stack.env["BACKLANE_DATABASE__URL"] = dead_db
    try:
        screen = system.cli("status")
    finally:
        system.stack.env.clear()
        system.stack.env.update(saved)
    assert "HEALTH unhealthy" in screen.stdout and "database unreachable" in screen.stdout
    orders_line = next(line for line in screen.stdout.splitlines() if line.startswith("orders "))
    assert orders_line.split()[2:6] == ["?", "?", "?", "?"], orders_line


def test_disabled_pipelines_and_sections_are_disabled_and_make_nothing_unhealthy(system: System) -> None:
    port = free_port()
    env = {
        "BACKLANE_CATALOG__ENABLED": "false",
        "BACKLANE_TRACKS__ENABLED": "false",
        "BACKLANE_WORKER__METRICS_PORT": str(port),
    }
    code, status = status_json(system, **env)
    assert code == 0, status["errors"]
    healths = {p["name"]: p["health"] for p in status["pipelines"]}
    assert healths["catalog"] == healths["tracks"] == "disabled"
    assert status["health"] == "healthy", healths

    _, status = status_json(system, BACKLANE_CATALOG__SECTIONS__SALES__ENABLED="false")
    catalog = next(p for p in status["pipelines"] if p["name"] == "catalog")
    sales = next(r for r in catalog["health_rows"] if r["name"] == "sales")
    assert sales["health"] == "disabled"

    system.stack.start_worker(processes=1, threads=2, extra_env=env)
    health = wait_until(lambda: _get(port, "/health"), timeout=30, what="the health endpoint")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "healthy", body
    assert body["pipelines"]["catalog"] == [{"name": "catalog", "health": "disabled"}]
    assert body["database"]["health"] == "healthy" and body["database"]["state"] == "ok"


def _get(port: int, path: str) -> httpx.Response | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except httpx.HTTPError:
        return None


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port`` (from /proc/net/tcp, state 0A)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return found


def test_two_workers_on_one_host_share_the_port_with_one_warning_and_the_endpoint_is_on_loopback(
    system: System,
) -> None:
    port = free_port()
    env = {"BACKLANE_WORKER__METRICS_PORT": str(port)}
    first = system.stack.start_worker(processes=1, threads=2, extra_env=env)
    wait_until(lambda: _get(port, "/health"), timeout=30, what="the first worker's endpoint")
    assert _listening_addresses(port) == {"127.0.0.1"}, "loopback unless BACKLANE_WORKER__METRICS_HOST says otherwise"
    second = system.stack.start_worker(processes=1, threads=2, extra_env=env)
    wait_until(lambda: "is taken" in second.log_tail(200), timeout=30, what="the second worker's warning")
    log = second.log_tail(400)
    warnings = [line for line in log.splitlines() if "BACKLANE_WORKER__METRICS_PORT" in line]
    assert len(warnings) == 1 and "[WARNING]" in warnings[0], log
    assert "Traceback" not in log and "Address already in use" not in log, log

    system.create_orders(10)
    first.stop()  # the second worker alone must do the work: it kept running
    assert second.alive
    assert system.cli("trigger", "orders").returncode == 0
    wait_until(lambda: system.settled() == 10, timeout=60, what="the second worker settled the orders")
    assert system.creations() == [1] * 10


def _pty_run(argv: list[str], env: dict[str, str], seconds: float, size: tuple[int, int] = (24, 80)) -> tuple[int, str]:
    """Run ``argv`` on a terminal of ``size`` (rows, columns), press Ctrl-C after ``seconds``."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    proc = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    output = b""
    started = time.monotonic()
    interrupted = False
    while proc.poll() is None or select.select([master], [], [], 0)[0]:
        ready = select.select([master], [], [], 0.1)[0]
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        if not interrupted and time.monotonic() - started > seconds:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the terminal's foreground group
            interrupted = True
        if time.monotonic() - started > seconds + 20:
            proc.kill()
            break
    os.close(master)
    return proc.wait(10), output.decode(errors="replace")


def test_watch_fits_an_80x24_terminal_and_ctrl_c_ends_it_with_130_and_no_traceback(system: System) -> None:
    env = {**os.environ, **system.stack.env, "BACKLANE_CATALOG__SECTIONS__SALES__ENABLED": "false"}
    code, output = _pty_run([sys.executable, "-m", "backlane.cli", "status", "--watch", "1"], env, seconds=7)
    assert code == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    frames = [frame for frame in output.split("\x1b[H\x1b[2J") if frame.strip()]
    assert len(frames) >= 2, "it refreshed"
    frame = frames[-2]  # a whole one
    lines = frame.replace("\r", "").split("\n")
    assert len(lines) <= 24, frame
    assert max(len(line) for line in lines) <= 80, frame
    assert "catalog: " in frame and "1 disabled (sales)" in frame, "catalog folds into one summary line"
    assert "HEALTH" in lines[0], "the header stays on screen"
