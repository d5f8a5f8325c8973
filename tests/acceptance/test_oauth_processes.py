"""A real worker process whose identity-server client is refused: one line naming the settings
within 5 s, the orders kept; a worker with the right secret then places each of them once."""

from __future__ import annotations

import time

import pytest

from devtools.simulator.identity import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from tests.acceptance.conftest import System
from tests.waiting import wait_until

WRONG_SECRET = "wrong-secret-7f3a91"


def oauth_env(system: System, secret: str) -> dict[str, str]:
    return {
        "BACKLANE_ORDERS__OAUTH__TOKEN_URL": f"{system.simulator_url}/connect/token",
        "BACKLANE_ORDERS__OAUTH__CLIENT_ID": DEMO_CLIENT_ID,
        "BACKLANE_ORDERS__OAUTH__CLIENT_SECRET": secret,
        "BACKLANE_ORDERS__OAUTH__SCOPE": "orders.api",
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_with_a_wrong_client_secret_says_so_in_one_line_within_5_s(system: System) -> None:
    system.sim("/_admin/identity", {"required": {"orders": "orders.api"}})
    system.create_orders(3)
    worker = system.stack.start_worker(processes=1, threads=2, extra_env=oauth_env(system, WRONG_SECRET))
    wait_until(lambda: "ready for action" in worker.log_tail(200), timeout=90, what="the worker started")

    assert system.cli("trigger", "orders").returncode == 0
    triggered = time.monotonic()
    named = "check BACKLANE_ORDERS__OAUTH__CLIENT_ID and BACKLANE_ORDERS__OAUTH__CLIENT_SECRET"
    wait_until(lambda: named in worker.log_tail(400), timeout=5, interval=0.1, what="the refused client named")
    assert time.monotonic() - triggered < 5
    [line] = [line for line in worker.log_tail(400).splitlines() if named in line][:1]
    assert "invalid_client" in line and "waiting" in line
    assert system.settled() == 0, "the orders wait; none failed"
    assert system.sim("/_admin/stats")["orders"]["created"] == 0

    worker.stop()
    assert WRONG_SECRET not in worker.log_tail(10_000)
    fixed = system.stack.start_worker(processes=1, threads=2, extra_env=oauth_env(system, DEMO_CLIENT_SECRET))
    wait_until(lambda: system.settled() == 3, timeout=120, what="the orders placed by the fixed worker")
    assert system.creations() == [1, 1, 1]
    assert DEMO_CLIENT_SECRET not in fixed.log_tail(10_000)
