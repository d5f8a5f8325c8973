"""RabbitMQ away for long, or refusing us, against the real clock, worker and CLI processes.

periodiq's resolution is one minute (``cron``, no seconds), so the outage test
waits for the last seconds of a minute before stopping RabbitMQ, to have a tick
fall inside the outage: it takes 40 to 90 s, most of it waiting for that moment.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from devtools.stack import ManagedProcess
from tests.acceptance.conftest import System
from tests.waiting import wait_until

WRONG_PASSWORD = "n0t-the-Passw0rd"


def _restartable(system: System) -> None:
    if not getattr(system.rabbitmq, "restartable", False):
        pytest.fail("this test stops RabbitMQ: run it against the private node the tests start")


def _wait_for_second(second: int, latest: int) -> None:
    """Sleep until the wall clock's seconds are in [second, latest]."""
    now = datetime.now()
    wait = (second - now.second) % 60 if not second <= now.second <= latest else 0
    time.sleep(wait - now.microsecond / 1e6 if wait else 0)


def _next_minute(after: float) -> float:
    return (int(after) // 60 + 1) * 60


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_clock_waits_out_an_outage_longer_than_its_reconnect_timeout_and_runs_the_missed_tick(
    system: System,
) -> None:
    _restartable(system)
    system.create_orders(20)
    worker = system.stack.start_worker(processes=1, threads=4)
    clock = system.stack.start_clock({"BACKLANE_BROKER__RECONNECT_TIMEOUT": "2"})
    wait_until(lambda: system.settled() == 20, timeout=60, what="the orders of the first tick settled")

    _wait_for_second(50, 54)  # the next tick falls inside the outage
    tick = _next_minute(time.time())
    try:
        system.rabbitmq.stop()
        system.create_orders(20)  # created while RabbitMQ is away
        # Past the tick by more than the reconnect timeout: the old clock gave up and died here.
        time.sleep(max(0.0, tick + 4 - time.time()))
        assert clock.alive, f"the clock died during the outage:\n{clock.log_tail(40)}"
    finally:
        system.rabbitmq.start()

    # The missed tick runs when RabbitMQ is back, not at the next minute.
    wait_until(lambda: system.settled() == 40, timeout=tick + 55 - time.time(), what="orders of the missed tick")
    assert clock.alive and worker.alive
    assert system.creations() == [1] * 40
    for proc in (clock, worker):
        _says_once_per_outage(proc)


def _says_once_per_outage(proc: ManagedProcess) -> None:
    log = proc.log_tail(2000)
    assert log.count("is unreachable") == 1, f"{proc.name} must say once that RabbitMQ is away:\n{log}"
    assert log.count("is reachable again") == 1, f"{proc.name} must say once that RabbitMQ is back:\n{log}"
    assert "giving up" not in log and "Unhandled error" not in log and "Traceback" not in log, log
    assert "[pika" not in log, f"pika's own connection errors must be quiet:\n{log}"


def _wrong_password_env(system: System) -> dict[str, str]:
    url = system.rabbitmq.amqp_url
    assert "guest:guest@" in url
    return {"BACKLANE_BROKER__URL": url.replace("guest:guest@", f"guest:{WRONG_PASSWORD}@")}


def _one_line_naming_the_setting(output: str) -> None:
    lines = [line for line in output.splitlines() if "BACKLANE_BROKER__URL" in line]
    assert len(lines) == 1, f"expected one line naming BACKLANE_BROKER__URL:\n{output}"
    assert "ACCESS_REFUSED" in lines[0]
    assert WRONG_PASSWORD not in output
    assert "Traceback" not in output and "[pika" not in output, output


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("process", ["clock", "worker"])
def test_a_wrong_broker_password_stops_the_clock_and_the_worker_at_once_in_one_line(
    system: System, process: str
) -> None:
    env = _wrong_password_env(system)
    started = time.monotonic()
    proc = (
        system.stack.start_clock(env) if process == "clock" else system.stack.start_worker(processes=1, extra_env=env)
    )
    assert proc.proc is not None
    code = proc.proc.wait(timeout=15)
    took = time.monotonic() - started
    log = proc.log_tail(200)
    assert code != 0, log
    assert took < 10, f"{process} took {took:.1f}s to give up"
    _one_line_naming_the_setting(log)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_wrong_broker_password_fails_a_command_at_once_in_one_line(system: System) -> None:
    system.stack.env.update(_wrong_password_env(system))
    started = time.monotonic()
    result = system.cli("trigger", "orders")
    took = time.monotonic() - started
    assert result.returncode != 0, result
    assert took < 10, f"the command took {took:.1f}s to give up"
    _one_line_naming_the_setting(result.stdout + result.stderr)
