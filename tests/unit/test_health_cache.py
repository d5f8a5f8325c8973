"""The worker endpoint's answers are computed once per period, one computation at a time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from backlane.operations.single_flight import SingleFlight


def test_one_computation_per_period_and_concurrent_callers_wait_for_the_one_in_flight() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        started.set()
        release.wait(5)
        return len(calls)

    cache = SingleFlight(compute, ttl=60, stale=60, wait=5, overdue=lambda: -1)
    with ThreadPoolExecutor(50) as pool:
        results = [pool.submit(cache.get) for _ in range(50)]
        started.wait(5)
        time.sleep(0.1)
        release.set()
        assert [r.result() for r in results] == [1] * 50
    assert len(calls) == 1 and cache.get() == 1


def test_a_stale_recent_answer_is_served_while_one_computes_and_a_slow_one_is_overdue() -> None:
    release = threading.Event()
    values = iter([1, 2])

    def compute() -> int:
        value = next(values)
        if value == 2:
            release.wait(5)
        return value

    cache = SingleFlight(compute, ttl=0.05, stale=10, wait=0.2, overdue=lambda: -1)
    assert cache.get() == 1
    time.sleep(0.1)
    computing = threading.Thread(target=cache.get)
    computing.start()
    time.sleep(0.05)
    assert cache.get() == 1, "stale but recent: answered at once"
    cache.stale = 0
    started = time.monotonic()
    assert cache.get() == -1 and time.monotonic() - started < 1, "too old: wait, then overdue"
    release.set()
    computing.join(5)
    assert cache.get() == 2
