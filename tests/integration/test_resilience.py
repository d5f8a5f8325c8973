"""Breakers and rate limits in the real database (SQLite and PostgreSQL), shared by
many threads each with its own engine, as separate worker processes would be."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from backlane.core.clock import FrozenClock
from backlane.db.engine import Database
from backlane.db.migrate import upgrade
from backlane.errors import CircuitOpen, PermanentError, RateLimited, TransientError
from backlane.resilience import CircuitBreaker, Limit, RateLimiter


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    upgrade(database_url)
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 3, 1, tzinfo=UTC))


def breaker(db: Database, clock: FrozenClock, name: str = "source:test") -> CircuitBreaker:
    return CircuitBreaker(db, clock, name, failure_threshold=3, open_seconds=30)


def call(b: CircuitBreaker, error: Exception | None) -> str:
    try:
        with b.guard():
            if error is not None:
                raise error
    except CircuitOpen as exc:
        return f"refused {exc.delay_seconds:g}"
    except Exception:
        return "failed"
    return "ok"


def test_breaker_opens_refuses_then_one_trial_decides(db: Database, clock: FrozenClock) -> None:
    b = breaker(db, clock)
    down = TransientError("503")
    assert [call(b, down) for _ in range(3)] == ["failed"] * 3
    assert b.state()["state"] == "open"
    assert call(b, None) == "refused 30"
    clock.advance(seconds=30)
    assert b.state()["state"] == "half_open"
    assert call(b, down) == "failed"  # the trial fails: open again
    assert b.state()["state"] == "open" and b.state()["times_opened"] == 2
    clock.advance(seconds=30)
    assert call(b, None) == "ok"
    assert b.state()["state"] == "closed" and b.state()["consecutive_failures"] == 0


def test_permanent_errors_do_not_trip_the_breaker(db: Database, clock: FrozenClock) -> None:
    b = breaker(db, clock)
    assert [call(b, PermanentError("404")) for _ in range(5)] == ["failed"] * 5
    assert b.state()["state"] == "closed" and b.state()["consecutive_failures"] == 0


def test_only_one_of_many_processes_gets_the_trial(database_url: str, db: Database, clock: FrozenClock) -> None:
    b = breaker(db, clock)
    for _ in range(3):
        call(b, TransientError("down"))
    clock.advance(seconds=31)
    engines = [Database(database_url) for _ in range(8)]
    results: list[str] = []
    barrier = threading.Barrier(len(engines))

    def contend(own: Database) -> None:
        barrier.wait()
        try:
            CircuitBreaker(own, clock, "source:test", 3, 30).before_call()
            results.append("trial")
        except CircuitOpen:
            results.append("refused")

    threads = [threading.Thread(target=contend, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    assert sorted(results) == ["refused"] * 7 + ["trial"]


def test_rate_limit_is_shared_and_names_the_exact_delay(db: Database, clock: FrozenClock) -> None:
    limit = Limit("catalog", calls=2, window_seconds=3600)
    first, second = RateLimiter(db, clock), RateLimiter(db, clock)  # two "processes"
    first.acquire(limit.key, limit.calls, limit.window_seconds)
    clock.advance(seconds=600)
    second.acquire(limit.key, limit.calls, limit.window_seconds)
    with pytest.raises(RateLimited) as refused:
        first.acquire(limit.key, limit.calls, limit.window_seconds)
    assert refused.value.delay_seconds == 3000
    clock.advance(seconds=3000)
    second.acquire(limit.key, limit.calls, limit.window_seconds)
    assert first.state("catalog", 3600)["calls_in_window"] == 2


def test_a_server_wait_holds_every_worker(db: Database, clock: FrozenClock) -> None:
    limit = Limit("catalog", calls=None)
    one, other = RateLimiter(db, clock), RateLimiter(db, clock)
    with pytest.raises(RateLimited), one.guard(limit):
        raise RateLimited("429: wait for 120 seconds", 120)
    clock.advance(seconds=100)
    with pytest.raises(RateLimited) as refused, other.guard(limit):
        pytest.fail("no call may be made while the server's wait lasts")
    assert refused.value.delay_seconds == 20
    one.hold_for("catalog", 5, "shorter")  # a shorter hold never shortens the server's
    clock.advance(seconds=20)
    with other.guard(limit):
        pass


def test_concurrent_acquires_never_exceed_the_budget(database_url: str, db: Database, clock: FrozenClock) -> None:
    engines = [Database(database_url) for _ in range(6)]
    allowed: list[int] = []
    barrier = threading.Barrier(len(engines))

    def contend(own: Database) -> None:
        barrier.wait()
        for _ in range(3):
            try:
                RateLimiter(own, clock).acquire("endpoint", 4, 60)
                allowed.append(1)
            except RateLimited:
                pass

    threads = [threading.Thread(target=contend, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    assert len(allowed) == 4
    clock.advance(seconds=60)
    RateLimiter(db, clock).acquire("endpoint", 4, 60)
