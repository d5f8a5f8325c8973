"""`backlane dashboard` as an operator runs it: it refuses an unsafe address in one line,
says so when its port is taken, serves pages, and Ctrl-C ends it with status 130."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from backlane.db.migrate import upgrade
from devtools.infra.ports import free_port


def environment(rabbitmq: Any, database_url: str, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("BACKLANE_")},
        "BACKLANE_BROKER__URL": rabbitmq.amqp_url,
        "BACKLANE_BROKER__MANAGEMENT_URL": rabbitmq.management_url,
        "BACKLANE_DATABASE__URL": database_url,
        "BACKLANE_WORKER__METRICS_PORT": "0",
        **extra,
    }


def dashboard(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "backlane.cli", "dashboard", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_an_address_others_can_reach_needs_a_password(rabbitmq: Any, tmp_path: Path) -> None:
    env = environment(rabbitmq, f"sqlite:///{tmp_path}/b.db", BACKLANE_DASHBOARD__HOST="0.0.0.0")
    done = subprocess.run(
        [sys.executable, "-m", "backlane.cli", "dashboard"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 78, done
    [line] = done.stderr.strip().splitlines()
    assert "BACKLANE_DASHBOARD__PASSWORD is not set" in line and "0.0.0.0" in line


@pytest.mark.parametrize("password", ["", "hunter2"])
def test_a_blank_or_short_password_refuses_to_start(rabbitmq: Any, tmp_path: Path, password: str) -> None:
    """An empty BACKLANE_DASHBOARD__PASSWORD used to count as set: `curl -u backlane:` got in."""
    env = environment(
        rabbitmq,
        f"sqlite:///{tmp_path}/b.db",
        BACKLANE_DASHBOARD__HOST="0.0.0.0",
        BACKLANE_DASHBOARD__PASSWORD=password,
    )
    done = subprocess.run(
        [sys.executable, "-m", "backlane.cli", "dashboard"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 78, done
    [line] = done.stderr.strip().splitlines()
    assert "BACKLANE_DASHBOARD__PASSWORD is" in line and "at least 12" in line


def test_serves_until_ctrl_c_and_a_taken_port_is_one_line(rabbitmq: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/b.db"
    upgrade(url)
    port = free_port()
    env = environment(rabbitmq, url, BACKLANE_DASHBOARD__PORT=str(port))
    proc = dashboard(env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"dashboard on http://127.0.0.1:{port}/"), (first, proc.stderr and proc.stderr.read())
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert page.status_code == 200 and 'data-pipeline="orders"' in page.text
        # Over HTTP as a DNS-rebinding page reaches it: its own name in Host gets nothing.
        rebound = httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": f"evil.example:{port}"}, timeout=30)
        assert rebound.status_code == 421 and "set-cookie" not in rebound.headers and "csrf" not in rebound.text
        for query in ("page=%C2%B2", "before=%C2%B2", "q=%C2%B2"):
            assert httpx.get(f"http://127.0.0.1:{port}/pipelines/orders?{query}", timeout=30).status_code == 200

        second = subprocess.run(
            [sys.executable, "-m", "backlane.cli", "dashboard"], env=env, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 1
        [line] = second.stderr.strip().splitlines()
        assert f"127.0.0.1:{port}: the port is taken" in line and "BACKLANE_DASHBOARD__PORT" in line

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with socket.socket() as sock:  # the port is free again
        sock.bind(("127.0.0.1", port))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_second_run_reuses_nothing_stale(rabbitmq: Any, database_url: str) -> None:
    """Two runs one after another on the same port: the second starts at once."""
    upgrade(database_url)
    port = free_port()
    env = environment(rabbitmq, database_url, BACKLANE_DASHBOARD__PORT=str(port))
    for _ in range(2):
        proc = dashboard(env)
        assert proc.stdout is not None and proc.stdout.readline().startswith("dashboard on")
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
