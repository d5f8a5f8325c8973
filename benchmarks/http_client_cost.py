"""CPU of one order's two requests (POST /orders, GET /orders/{id}) through httpx as a user
makes the client, and through backlane's shared API client (no cookie jar, the path joined to
the base URL once: backlane/clients/http.py), in one thread of this process.

    python benchmarks/http_client_cost.py [PAIRS] [--rounds=3]

The order API simulator runs as its own process on loopback; the clients alternate round by
round, and the figure is this process's CPU (time.process_time) per pair, so the simulator's
work is not in it.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _harness as h
import httpx

from backlane.clients.http import request_json, shared_client

BODY = {"customer": "c-1", "items": [{"sku": "sku-1", "quantity": 1}]}


def plain(base: str) -> Callable[[], None]:
    client = httpx.Client(base_url=base, timeout=10.0)

    def pair() -> None:
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        placed = client.post("/orders", json=BODY, headers=headers).json()
        client.get(f"/orders/{placed['id']}").json()

    return pair


def backlane(base: str) -> Callable[[], None]:
    client = shared_client(base, timeout=10.0)

    def pair() -> None:
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        placed: Any = request_json(client, "POST", "/orders", json=BODY, headers=headers)
        request_json(client, "GET", f"/orders/{placed['id']}")

    return pair


def cpu_per_pair(pair: Callable[[], None], n: int) -> float:
    for _ in range(min(200, n)):
        pair()
    started = time.process_time()
    for _ in range(n):
        pair()
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    (n,) = h.sizes([2_000])[:1]
    rounds = int(h.option("rounds", "3"))
    argv = [sys.executable, "-m", "devtools.simulator", "--port", "0", "--order-settle-polls", "0"]
    simulator = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert simulator.stdout is not None
        base = simulator.stdout.readline().rsplit(" ", 1)[-1].strip()
        clients = {"httpx.Client": plain(base), "backlane shared client": backlane(base)}
        results: dict[str, list[float]] = {name: [] for name in clients}
        for r in range(rounds):
            for name, pair in clients.items():
                results[name].append(cpu_per_pair(pair, n))
                h.log(f"round {r + 1}/{rounds}: {name} {results[name][-1]:.0f} µs/pair")
        first = statistics.mean(results["httpx.Client"])
        rows = [
            [
                name,
                ", ".join(f"{v:.0f}" for v in runs),
                f"{statistics.mean(runs):.0f}",
                f"{first / statistics.mean(runs):.2f}x",
            ]
            for name, runs in results.items()
        ]
        title = (
            f"One order's POST + GET: client CPU µs per pair, {n:,} pairs per round ({h.machine()}; load {h.load()})"
        )
        print(h.table(title, ["client", "per round", "mean", "vs httpx.Client"], rows))
    finally:
        simulator.terminate()
        simulator.wait(10)


if __name__ == "__main__":
    main()
