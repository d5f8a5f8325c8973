"""The worker's /health under a flood and against silent clients, on real RabbitMQ and PostgreSQL.

Before: every request opened its own AMQP connection and database engine on its own thread,
with no socket timeout; 400 concurrent GETs answered 127 x 503 and opened up to 215 broker and
41 PostgreSQL connections. Now one request at a time computes the report, the rest reuse it."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
def endpoint(app: App, database_url: str) -> Iterator[tuple[str, Any]]:
    settings = app.runtime.settings
    broker = settings.broker.model_copy(update={"url": SecretStr(app.rabbitmq.amqp_url)})
    worker = settings.worker.model_copy(
        update={"metrics_port": free_port(), "metrics_host": "127.0.0.1", "endpoint_timeout": 1.0}
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


def _postgres_connections(url: str) -> int:
    engine = sqlalchemy.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sqlalchemy.NullPool
    )
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_400_concurrent_health_checks_open_a_handful_of_connections(
    app: App, endpoint: tuple[str, Any], database_url: str
) -> None:
    url, server = endpoint
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # warm: one computation
    before = _postgres_connections(database_url)
    peak = before
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _postgres_connections(database_url))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timings: list[float] = []

    def get(_: int) -> int:
        started = time.monotonic()
        try:
            return httpx.get(f"{url}/health", timeout=10).status_code
        except httpx.HTTPError as exc:
            return -1 if not isinstance(exc, httpx.TimeoutException) else -2
        finally:
            timings.append(time.monotonic() - started)

    with ThreadPoolExecutor(max_workers=400) as pool:
        statuses = Counter(pool.map(get, range(400)))
    stop.set()
    sampler.join()
    timings.sort()
    print(
        f"\n/health x400: {dict(statuses)}; computations {server.health.computations}; "
        f"PostgreSQL connections {before} -> peak {peak} (the sampler's own included); "
        f"p50 {timings[200] * 1000:.0f} ms, p99 {timings[396] * 1000:.0f} ms"
    )
    assert -2 not in statuses, statuses  # nothing waited out a timeout
    assert set(statuses) <= {200, 503, -1}, statuses
    assert statuses[200] >= 100, statuses
    # One computation per cache period: one broker connection and one database read, not 400.
    assert server.health.computations <= 3
    assert peak - before <= 4, (before, peak)


def test_silent_clients_do_not_hold_the_endpoint(app: App, endpoint: tuple[str, Any]) -> None:
    url, _server = endpoint
    port = int(url.rsplit(":", 1)[1])
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(30)]
    try:
        deadline = time.monotonic() + 5  # the test's endpoint_timeout is 1 s
        while True:
            answer = httpx.get(f"{url}/health", timeout=5)
            if answer.status_code == 200:
                break
            assert answer.status_code == 503 and answer.text == "busy\n"
            assert time.monotonic() < deadline, "silent clients held every thread past their timeout"
            time.sleep(0.2)
    finally:
        for s in silent:
            s.close()
