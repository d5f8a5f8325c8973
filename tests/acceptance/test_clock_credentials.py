"""A password rotated under a running clock ends it within seconds, as it ends the workers.

On the code before ticks.AccessWatch, the clock noticed only at its next tick (47 s in the
report, up to a minute or a schedule's whole period): meanwhile it looked alive and sent nothing.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.acceptance.conftest import System
from tests.waiting import wait_until


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_rotated_password_ends_the_clock_in_seconds_with_one_line(system: System) -> None:
    management, auth, user = system.rabbitmq.management_url, ("guest", "guest"), "clock-rotation"
    httpx.put(f"{management}/api/users/{user}", json={"password": "Old-Pa55", "tags": ""}, auth=auth, timeout=10)
    everything = {"configure": ".*", "write": ".*", "read": ".*"}
    httpx.put(f"{management}/api/permissions/%2F/{user}", json=everything, auth=auth, timeout=10).raise_for_status()
    url = system.rabbitmq.amqp_url.replace("guest:guest@", f"{user}:Old-Pa55@")
    clock = system.stack.start_clock(extra_env={"BACKLANE_BROKER__URL": url})
    watching = "still accepts its credentials"
    wait_until(lambda: watching in clock.log_tail(200), timeout=60, what="the clock past its start-up checks")
    assert clock.alive, clock.log_tail()

    rotated = httpx.put(
        f"{management}/api/users/{user}", json={"password": "New-Pa55", "tags": ""}, auth=auth, timeout=10
    )
    rotated.raise_for_status()
    started = time.monotonic()
    assert clock.proc is not None
    code = clock.proc.wait(20)
    took = time.monotonic() - started
    log = clock.log_tail(60)
    assert code == 78, log
    assert took < 15, f"noticed after {took:.0f} s"
    assert "BACKLANE_BROKER__URL" in log and "Old-Pa55" not in log, log
