"""BACKLANE_LOG_FORMAT in the real processes: a worker (``dramatiq actors scheduler``), the
clock (``periodiq scheduler``) and a command (``backlane -v``) against the real broker write
every line as one JSON object (in json), outcome lines with their fields, and no secret in
either format."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from devtools.infra.ports import free_port
from tests.acceptance.conftest import System
from tests.waiting import wait_until

#: The secrets of this deployment: in the broker URL (a real RabbitMQ user's password), the
#: order API's key and the signing key. None may appear in any line of any process.
BROKER_PASSWORD = "hunter2-broker-password"
API_KEY = "sk-hunter2-order-api"
SIGNING_KEY = "hunter2-signing-key-0123"

#: What is written before backlane is loaded, or where it never is, stays in dramatiq's and
#: periodiq's text format: the dramatiq command's parent process (it starts and watches the
#: worker processes, never importing the application: "booting up", "Sending signal"), the
#: endpoint process's "ready" line (written before it loads the application) and periodiq's
#: first line, written before it imports the application.
FOREIGN = (
    "[dramatiq.MainProcess] [",
    "[dramatiq.ForkProcess(0)] [INFO] Fork process 'backlane.app:serve_endpoint' is ready for action.",
    "[periodiq] [INFO] Starting Periodiq, a simple scheduler for Dramatiq.",
)


def _user_with_a_secret_password(system: System) -> str:
    """The broker URL of a RabbitMQ user whose password is :data:`BROKER_PASSWORD`."""
    management, auth, user = system.rabbitmq.management_url, ("guest", "guest"), "json-logs"
    body = {"password": BROKER_PASSWORD, "tags": ""}
    httpx.put(f"{management}/api/users/{user}", json=body, auth=auth, timeout=10).raise_for_status()
    everything = {"configure": ".*", "write": ".*", "read": ".*"}
    httpx.put(f"{management}/api/permissions/%2F/{user}", json=everything, auth=auth, timeout=10).raise_for_status()
    url: str = system.rabbitmq.amqp_url
    return url.replace("guest:guest@", f"{user}:{BROKER_PASSWORD}@")


def _foreign(line: str) -> bool:
    return any(marker in line for marker in FOREIGN)


def _entries(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as JSON but the :data:`FOREIGN` ones (any other fails the test)."""
    entries = []
    for line in text.splitlines():
        if _foreign(line):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= set(entry), line
        entries.append(entry)
    return entries


def _run(system: System, log_format: str, orders: int) -> tuple[list[int], str, str, str]:
    """Settle ``orders`` orders (30% of the API's calls failing) through a worker and the clock
    writing ``log_format``, with secrets in the broker URL, the API key and the signing key;
    then ``backlane -v status``. The orders, and the worker's, the clock's and the command's logs."""
    system.stack.env.update(
        BACKLANE_LOG_FORMAT=log_format,
        BACKLANE_BROKER__URL=_user_with_a_secret_password(system),
        BACKLANE_ORDERS__API_KEY=API_KEY,
        BACKLANE_MESSAGES__SIGNING_KEY=SIGNING_KEY,
        BACKLANE_WORKER__METRICS_PORT=str(free_port()),  # the /health and /metrics process too
    )
    system.sim("/_admin/config", {"failure_rate": 0.3, "seed": 11})  # retries, with their reasons
    ids = system.create_orders(orders)
    worker = system.stack.start_worker(processes=1, threads=4)
    clock = system.stack.start_clock()  # ticks every due discover actor as it starts
    wait_until(lambda: system.settled() == len(ids), timeout=90, what="every order settled")
    command = system.cli("-v", "status")
    worker.stop()
    clock.stop()
    assert command.returncode in (0, 1), command.stderr  # status is 1 while some health is not green
    return ids, worker.log_path.read_text(), clock.log_path.read_text(), command.stderr


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # the database URL with a password
def test_no_secret_in_any_text_line(system: System) -> None:
    orders, worker_log, clock_log, command_log = _run(system, "text", 5)
    for text in (worker_log, clock_log, command_log):
        assert "hunter2" not in text, "a secret in the log"
    assert worker_log.count('[backlane.outcome] [INFO] {"pipeline":"orders"') >= len(orders), "text as before"
    assert "[DEBUG]" in command_log or " DEBUG " in command_log, "-v wrote its debug lines"
    assert "HTTP Request" not in worker_log, "httpx's line per request is off by default"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # the database URL with a password
def test_every_line_of_the_worker_clock_and_a_command_is_json_with_the_outcomes_fields(system: System) -> None:
    orders, worker_log, clock_log, command_log = _run(system, "json", 20)
    for text in (worker_log, clock_log, command_log):
        assert "hunter2" not in text, "a secret in the log"

    foreign = [line for line in (worker_log + clock_log).splitlines() if _foreign(line)]
    assert len(foreign) <= 5, f"booting up, the signal, the endpoint's ready, periodiq's first line: {foreign}"
    worker_entries = _entries(worker_log)

    outcomes = [e for e in worker_entries if e["logger"] == "backlane.outcome" and e["pipeline"] == "orders"]
    settled = {e["item"] for e in outcomes if e["outcome"] in ("succeeded", "failed")}
    assert settled == set(orders), "one final outcome line per order"
    for entry in outcomes:
        assert entry["attempt"] >= 1, entry
        assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0, entry
        assert entry["outcome"] in ("succeeded", "retry", "waiting", "failed"), entry
        assert entry["time"].endswith("Z") and entry["message"].startswith(f"orders item {entry['item']}: "), entry
    retries = [e for e in outcomes if e["outcome"] == "retry"]
    assert retries, "the simulator failed 30% of the calls: some attempts were retried"
    assert all(e["error_class"] and e["reason"] and e["retry_in_s"] > 0 for e in retries), retries
    assert {e["attempt"] for e in outcomes} > {1}, "a retried order's later attempts counted"

    clock_entries = _entries(clock_log)
    assert any("discover_orders" in e["message"] for e in clock_entries), clock_entries

    command_entries = _entries(command_log)
    assert any(e["level"] == "DEBUG" for e in command_entries), "-v writes its debug lines as JSON"
