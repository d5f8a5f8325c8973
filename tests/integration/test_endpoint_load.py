"""The worker's /health under a flood and against hostile clients, on real RabbitMQ and PostgreSQL.

Before: every request opened its own AMQP connection and database engine on its own thread,
with no socket timeout; 400 concurrent GETs answered 127 x 503 and opened up to 215 broker and
41 PostgreSQL connections. Now one computation at a time, reused for a few seconds, over one
kept broker connection and the process's one engine; requests are read by one I/O thread with
a deadline and a size limit, so silent clients cost a socket, not a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
from pydantic import SecretStr

from backlane.core.registry import REGISTRY
from backlane.operations.endpoint import build_server
from devtools.infra.ports import free_port
from tests.integration.conftest import App

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def endpoint_timeout() -> float:
    """The endpoint's request deadline: generous, since 400 client threads in this one process
    on a shared machine may take seconds to send; the slow-client test sets 1 s."""
    return 10.0


@pytest.fixture
def endpoint(app: App, database_url: str, endpoint_timeout: float) -> Iterator[tuple[str, Any]]:
    settings = app.runtime.settings
    broker = settings.broker.model_copy(update={"url": SecretStr(app.rabbitmq.amqp_url)})
    worker = settings.worker.model_copy(
        update={
            "metrics_port": free_port(),
            "metrics_host": "127.0.0.1",
            "endpoint_timeout": endpoint_timeout,
            "metrics_cache_seconds": 30.0,  # a slow machine must not turn one period into two
        }
    )
    app.runtime.settings = settings.model_copy(update={"broker": broker, "worker": worker})
    server = build_server(REGISTRY, app.runtime)
    assert server is not None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{worker.metrics_port}", server
    finally:
        server.shutdown()
        server.server_close()
        server.endpoint.close()


def _postgres_backends(url: str) -> set[int]:
    """PIDs of the client backends on the test's database (the asking one excluded)."""
    engine = sqlalchemy.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sqlalchemy.NullPool
    )
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text(
                    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
                    "AND datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return {int(row[0]) for row in rows}
    finally:
        engine.dispose()


def _broker_connections(rabbitmq: Any, since: float = 0.0) -> tuple[int, int]:
    """(AMQP connections open now that were opened at or after `since`, connections accepted so
    far) on the test node: the management API's list, and the node's log ("accepting AMQP
    connection": each one, however short-lived). The list is filtered by its `connected_at`
    because it lags: connections other tests of the session opened and closed before the flood
    can appear or linger in it for a second or more (CI saw 50 -> 59 open with none created)."""
    listed = [
        connection
        for connection in httpx.get(
            f"{rabbitmq.management_url}/api/connections", auth=("guest", "guest"), timeout=5
        ).json()
        if connection.get("connected_at", 0) >= since * 1000
    ]
    log_dir: Path = rabbitmq.log_dir
    accepted = sum(
        log.read_text(errors="replace").count("accepting AMQP connection")
        for log in log_dir.glob("*.log")
        if log.name != "stdout.log"
    )
    return len(listed), accepted


def test_400_concurrent_health_checks_open_a_handful_of_connections(
    app: App, endpoint: tuple[str, Any], database_url: str
) -> None:
    url, server = endpoint
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # warm: the connections exist
    time.sleep(1.5)  # the management API's statistics refresh every second on the test node
    flood_started = time.time()
    open_before, created_before = _broker_connections(app.rabbitmq)
    seen_backends = before_backends = _postgres_backends(database_url)
    peak_new = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal seen_backends, peak_new
        while not stop.is_set():
            seen_backends = seen_backends | _postgres_backends(database_url)
            peak_new = max(peak_new, _broker_connections(app.rabbitmq, since=flood_started)[0])
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timings: list[tuple[int, float]] = []

    def get(_: int) -> int:
        started = time.monotonic()
        status = -1
        try:
            status = httpx.get(f"{url}/health", timeout=10).status_code
        except httpx.TimeoutException:
            status = -2
        except httpx.HTTPError:
            status = -1
        timings.append((status, time.monotonic() - started))
        return status

    computations = server.health.computations
    with ThreadPoolExecutor(max_workers=400) as pool:
        statuses = Counter(pool.map(get, range(400)))
    time.sleep(1.5)
    stop.set()
    sampler.join()
    open_after, created_after = _broker_connections(app.rabbitmq)
    latencies = sorted(t for _, t in timings)
    print(
        f"\n/health x400: {dict(statuses)}; computations {server.health.computations - computations}; "
        f"broker connections open {open_before} -> {open_after}, opened during the flood and seen open at once "
        f"at most {peak_new}, "
        f"created during the flood {created_after - created_before}; "
        f"PostgreSQL backends {len(before_backends)} -> seen {len(seen_backends)}; "
        f"p50 {latencies[200] * 1000:.0f} ms, p99 {latencies[396] * 1000:.0f} ms; refused {server.refused}"
    )
    assert set(statuses) <= {200, 503}, statuses  # no timeout, no reset
    busy = [t for status, t in timings if status == 503]
    assert all(t < 2 for t in busy), "a 503 is a fast 'busy', not a check that timed out"
    assert statuses[200] >= 300, statuses
    assert created_after - created_before <= 2, "the broker check reuses its connection"
    assert peak_new <= 2, (open_before, peak_new)
    assert len(seen_backends - before_backends) <= 2, "the database check reuses the process's engine"
    assert server.health.computations - computations <= 3


@pytest.mark.parametrize("endpoint_timeout", [1.0])
def test_silent_and_trickling_clients_do_not_hold_the_endpoint(app: App, endpoint: tuple[str, Any]) -> None:
    url, server = endpoint
    port = int(url.rsplit(":", 1)[1])
    threads = app.runtime.settings.worker.endpoint_threads
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(threads * 8)]
    trickling = socket.create_connection(("127.0.0.1", port))
    trickling.sendall(b"GET /health HTTP/1.1\r\n")
    try:
        for _ in range(3):
            trickling.sendall(b"X-Slow: 1\r\n")
            started = time.monotonic()
            answer = httpx.get(f"{url}/health", timeout=5)
            assert answer.status_code == 200, answer.text  # not "busy": silent sockets hold no thread
            assert time.monotonic() - started < 0.5
            time.sleep(0.2)
        # Past the 1 s deadline the silent and the trickling clients are answered 408 and let go.
        trickling.settimeout(5)
        assert trickling.recv(100).startswith(b"HTTP/1.0 408")
        silent[0].settimeout(5)
        assert silent[0].recv(100).startswith(b"HTTP/1.0 408")
        assert server.refused["timed out"] >= len(silent)
    finally:
        for s in [*silent, trickling]:
            s.close()


def test_an_oversized_request_is_refused_and_metrics_are_cached(
    endpoint: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, server = endpoint
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # what prepare_environment sets
    answer = httpx.get(f"{url}/health", headers={"X-Big": "x" * 20_000}, timeout=5)
    assert answer.status_code == 431
    first = server.endpoint.metrics.computations
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = Counter(pool.map(lambda _: httpx.get(f"{url}/metrics", timeout=5).status_code, range(100)))
    assert statuses == {200: 100}
    assert server.endpoint.metrics.computations - first == 1
