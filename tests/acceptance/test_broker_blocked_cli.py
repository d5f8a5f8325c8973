"""`backlane trigger` and `backlane status` while RabbitMQ blocks publishers (its memory alarm):
one line within BROKER__COMMAND_TIMEOUT, exit non-zero, status not healthy."""

from __future__ import annotations

import time

import pytest

from tests.acceptance.conftest import System
from tests.integration.test_broker_blocked import alarm


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_trigger_and_status_during_a_memory_alarm(system: System) -> None:
    if not getattr(system.rabbitmq, "restartable", False):
        pytest.fail("this test raises RabbitMQ alarms: run it against the private node the tests start")
    system.stack.env["BACKLANE_BROKER__COMMAND_TIMEOUT"] = "3"
    baseline = time.monotonic()
    assert system.cli("pipelines").returncode == 0  # what starting a command costs here, without RabbitMQ
    start_cost = time.monotonic() - baseline
    with alarm(system.rabbitmq, "memory"):
        started = time.monotonic()
        trigger = system.cli("trigger", "orders")
        took = time.monotonic() - started
        status = system.cli("status")
    output = trigger.stdout + trigger.stderr
    assert trigger.returncode != 0, output
    assert took - start_cost < 3, f"trigger took {took:.1f}s (start-up {start_cost:.1f}s) with a 3 s timeout"
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "blocking publishers" in lines[0] and "memory alarm" in lines[0], output
    shown = status.stdout + status.stderr
    assert status.returncode != 0, shown
    assert "HEALTH healthy" not in shown and "rabbitmq blocked" in shown and "memory alarm" in shown, shown
    assert system.cli("trigger", "orders").returncode == 0, "works again once the alarm clears"
