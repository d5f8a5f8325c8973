"""The worker endpoint's health cache: one computation per period, never an exception."""

from __future__ import annotations

from typing import Any

from backlane.operations.endpoint import HealthCache


def test_the_cache_computes_once_per_period_and_never_raises() -> None:
    now = [0.0]
    calls: list[int] = []

    def compute() -> tuple[int, dict[str, Any]]:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return 200, {"status": "healthy"}

    cache = HealthCache(compute, ttl=5.0, clock=lambda: now[0])
    assert cache.get() == (200, {"status": "healthy"})
    now[0] = 4.9
    cache.get()
    assert len(calls) == 1
    now[0] = 5.0
    status, body = cache.get()
    assert status == 503 and body["status"] == "unhealthy" and "boom" not in str(body)
    now[0] = 10.1
    assert cache.get()[0] == 200 and len(calls) == 3
