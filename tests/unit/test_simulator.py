"""The external-API simulator, driven over real HTTP on a loopback port.

Other tests prove client idempotency and backoff against this simulator, so its
own counters and knobs have to be exactly right; these tests pin them down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.simulator import HttpError, Simulator, SimulatorConfig, register_route, unregister_route

ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    """Injectable monotonic clock so rate-limit windows are tested without sleeping."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Simulator]:
    with Simulator(config=SimulatorConfig(seed=7), now=clock) as simulator:
        yield simulator


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=10) as c:
        yield c


def place(client: httpx.Client, key: str | None, body: Any = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/orders", json={"items": [{"sku": "A1"}]} if body is None else body, headers=headers)


def stats(client: httpx.Client) -> dict[str, Any]:
    return client.get("/_admin/stats").json()


def test_idempotent_create_and_replay(client: httpx.Client) -> None:
    first = place(client, "k1")
    assert first.status_code == 201
    assert first.json() == {"id": "ext-1", "status": "pending"}
    assert first.headers["content-length"] == str(len(first.content))
    again = place(client, "k1")
    assert again.status_code == 200 and again.json() == first.json()
    assert place(client, "k2").json()["id"] == "ext-2"
    reused = place(client, "k1", {"items": [{"sku": "B2"}]})
    assert reused.status_code == 422
    assert reused.json() == {"error": "idempotency key reused with a different body"}
    orders = stats(client)["orders"]
    assert orders["created"] == 2 and orders["replays"] == 1
    assert orders["by_key"]["k1"] == {"id": "ext-1", "creations": 1, "calls": 3}


def test_bad_requests(client: httpx.Client) -> None:
    missing = place(client, None)
    assert missing.status_code == 400 and missing.json() == {"error": "missing Idempotency-Key"}
    bad = client.post("/orders", content=b"{nope", headers={"Idempotency-Key": "k"})
    assert bad.status_code == 400
    assert client.get("/orders/ext-99").status_code == 404
    assert client.get("/nowhere").status_code == 404
    assert client.delete("/orders/ext-1").status_code == 405
    assert stats(client)["orders"]["created"] == 0


def test_concurrent_same_key_creates_once(client: httpx.Client, sim: Simulator) -> None:
    limits = httpx.Limits(max_connections=16)
    with httpx.Client(base_url=sim.url, limits=limits) as shared, ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: place(shared, "same").status_code, range(64)))
    assert codes.count(201) == 1 and codes.count(200) == 63
    assert stats(client)["orders"]["by_key"]["same"] == {"id": "ext-1", "creations": 1, "calls": 64}


def test_status_settles_after_polls(client: httpx.Client) -> None:
    client.post("/_admin/config", json={"order_settle_polls": 2})
    oid = place(client, "k").json()["id"]
    seen = [client.get(f"/orders/{oid}").json()["status"] for _ in range(4)]
    assert seen == ["pending", "pending", "succeeded", "succeeded"]
    client.post("/_admin/config", json={"order_settle_polls": 0, "order_reject_rate": 1.0})
    rejected = place(client, "k-rejected").json()["id"]
    assert client.get(f"/orders/{rejected}").json() == {"id": rejected, "status": "failed"}
    assert place(client, "k-rejected").json()["status"] == "failed"


def test_lost_response_keeps_side_effect(client: httpx.Client) -> None:
    client.post("/_admin/config", json={"lost_response_rate": 1.0})
    lost = place(client, "k")
    assert lost.status_code == 502 and lost.json() == {"error": "response lost"}
    client.post("/_admin/config", json={"lost_response_rate": 0.0})
    replay = place(client, "k")
    assert replay.status_code == 200 and replay.json()["id"] == "ext-1"
    orders = stats(client)["orders"]
    assert orders["created"] == 1 and orders["lost_responses"] == 1
    assert orders["by_key"]["k"] == {"id": "ext-1", "creations": 1, "calls": 2}


def _failure_pattern(seed: int, n: int) -> list[int]:
    config = SimulatorConfig(failure_rate=0.3, seed=seed)
    with Simulator(config=config) as simulator, httpx.Client(base_url=simulator.url) as c:
        codes = [place(c, f"k{i}").status_code for i in range(n)]
        created = stats(c)["orders"]["created"]
    assert created == codes.count(201), "a transient failure must happen before any side effect"
    return codes


def test_failure_rate_is_seeded_and_close_to_knob() -> None:
    codes = _failure_pattern(seed=42, n=400)
    assert set(codes) <= {201, 503}
    assert 0.22 <= codes.count(503) / len(codes) <= 0.38
    assert _failure_pattern(seed=42, n=400) == codes


def test_transient_failure_reply(client: httpx.Client) -> None:
    client.post("/_admin/config", json={"failure_rate": 1.0})
    reply = client.get("/orders/ext-1")
    assert reply.status_code == 503 and reply.json() == {"error": "transient"}
    assert client.get("/_admin/health").json() == {"ok": True}
    assert stats(client)["failures"]["transient"] == 1


@pytest.mark.parametrize("down", [["orders"], ["*"]])
def test_outage(client: httpx.Client, down: list[str]) -> None:
    assert client.post("/_admin/config", json={"outage": down}).json()["outage"] == down
    reply = place(client, "k")
    assert reply.status_code == 503 and reply.json() == {"error": "outage"}
    assert client.get("/_admin/stats").status_code == 200
    client.post("/_admin/config", json={"outage": ["catalog"]})
    assert place(client, "k").status_code == 201
    counters = stats(client)
    assert counters["orders"]["by_key"]["k"]["calls"] == 1
    assert counters["failures"]["outage"] == 1


def test_rate_limit_reply_and_window(client: httpx.Client, clock: FakeClock) -> None:
    client.post("/_admin/config", json={"rate_limits": {"orders.create": [2, 60]}})
    assert place(client, "a").status_code == 201
    clock.t += 10
    assert place(client, "b").status_code == 201
    limited = place(client, "c")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "50"
    assert limited.json() == {"error": "rate_limited", "message": "wait for 50 seconds", "retry_after": 50}
    clock.t += 49.5
    half = place(client, "c")
    assert half.headers["Retry-After"] == "1"
    assert half.json()["retry_after"] == 0.5 and half.json()["message"] == "wait for 0.5 seconds"
    clock.t += 0.5
    assert place(client, "c").status_code == 201  # sliding window: the first slot has left
    assert place(client, "d").status_code == 429
    assert client.get("/orders/ext-1").status_code == 200  # other rate keys are independent
    counters = stats(client)
    assert counters["rate_limited"] == {"orders.create": 3}
    assert counters["orders"]["by_key"]["c"]["calls"] == 1
    assert "d" not in counters["orders"]["by_key"]


def test_stats_shape(client: httpx.Client) -> None:
    place(client, "k")
    client.get("/orders/ext-1")
    client.get("/orders/missing")
    counters = stats(client)
    assert counters["requests"] == {"orders.create": 1, "orders.status": 2}
    assert counters["status_codes"] == {"200": 1, "201": 1, "404": 1}
    assert counters["rate_limited"] == {}
    assert set(counters["orders"]) >= {"created", "replays", "by_key"}


def test_admin_config_and_reset(client: httpx.Client) -> None:
    config = client.get("/_admin/config").json()
    assert config == SimulatorConfig(seed=7).to_dict()
    updated = client.post("/_admin/config", json={"latency_ms": 5, "rate_limits": {"catalog": [2, 3600]}})
    assert updated.json()["latency_ms"] == 5 and updated.json()["rate_limits"] == {"catalog": [2, 3600]}
    assert updated.json()["seed"] == 7
    assert client.post("/_admin/config", json={"bogus": 1}).status_code == 400
    assert client.post("/_admin/config", json={"failure_rate": 2}).status_code == 400
    assert client.post("/_admin/config", json={"rate_limits": {"x": [0, 1]}}).status_code == 400
    place(client, "k")
    assert client.post("/_admin/reset").status_code == 200
    assert stats(client)["orders"]["created"] == 0
    assert client.get("/_admin/config").json()["latency_ms"] == 5
    assert place(client, "k").json()["id"] == "ext-1"
    client.post("/_admin/reset", json={"config": True})
    assert client.get("/_admin/config").json() == config


def test_latency_applies_to_api_not_admin(client: httpx.Client) -> None:
    client.post("/_admin/config", json={"latency_ms": 150})
    started = time.perf_counter()
    client.get("/_admin/health")
    assert time.perf_counter() - started < 0.1
    started = time.perf_counter()
    client.get("/orders/ext-1")
    assert time.perf_counter() - started >= 0.15


def test_registered_route_hook(client: httpx.Client) -> None:
    def echo(state: Any, match: Any, body: bytes, headers: Any, query: dict[str, str]) -> Any:
        if query.get("fail"):
            raise HttpError(418, {"error": "teapot"})
        return 200, {"name": match.group("name"), "page": query.get("page")}, {"X-Echo": "1"}

    route = register_route("GET", r"/_test/echo/(?P<name>\w+)", "testsvc", "testsvc.echo", echo)
    try:
        reply = client.get("/_test/echo/abc", params={"page": "2"})
        assert reply.json() == {"name": "abc", "page": "2"} and reply.headers["X-Echo"] == "1"
        assert client.get("/_test/echo/abc", params={"fail": "1"}).status_code == 418
        client.post("/_admin/config", json={"outage": ["testsvc"]})
        assert client.get("/_test/echo/abc").json() == {"error": "outage"}
        assert place(client, "k").status_code == 201
        assert stats(client)["requests"]["testsvc.echo"] == 3
    finally:
        unregister_route(route)


def test_stop_cuts_connections_and_restart_keeps_state(sim: Simulator, client: httpx.Client) -> None:
    assert place(client, "k").status_code == 201
    url = sim.url
    sim.stop()
    with pytest.raises(httpx.TransportError):
        place(client, "k")
    sim.start()
    assert sim.url == url
    assert place(client, "k").status_code == 200


def test_main_runs_until_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.simulator",
            "--port",
            "0",
            "--seed",
            "3",
            "--rate-limit",
            "catalog=2/3600",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("simulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        config = httpx.get(f"{url}/_admin/config").json()
        assert config["seed"] == 3 and config["rate_limits"] == {"catalog": [2, 3600]}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_an_order_without_items_is_a_client_error(client: httpx.Client) -> None:
    response = place(client, "no-items", {"items": []})
    assert response.status_code == 422
    assert stats(client)["orders"]["created"] == 0
