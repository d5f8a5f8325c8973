"""Server-named waits recorded in the real database (SQLite and PostgreSQL) never outlive the
ceiling (``retries.max_delay_seconds``, an hour): one absurd Retry-After holds a rate limit an
hour at most, and a hold stored further out (before the ceiling, or under a higher one) is cut
back to it at the next call."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from backlane.core.clock import FrozenClock
from backlane.db.engine import Database
from backlane.db.migrate import upgrade
from backlane.db.models.resilience import RateLimitRow
from backlane.errors import DEFAULT_DELAY_CEILING_SECONDS, PermanentError, RateLimited, classify_response
from backlane.resilience import Limit, RateLimiter
from tests.unit.test_upstream_delays import response

CEILING = DEFAULT_DELAY_CEILING_SECONDS


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    upgrade(database_url)
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 3, 1, tzinfo=UTC))


def test_an_absurd_retry_after_holds_at_most_the_ceiling(db: Database, clock: FrozenClock) -> None:
    limiter = RateLimiter(db, clock)
    told = classify_response(response(429, {"Retry-After": "30000000000"}))
    assert isinstance(told, RateLimited)
    with pytest.raises(RateLimited), limiter.guard(Limit("catalog", calls=None)):
        raise told
    with pytest.raises(RateLimited) as refused:
        limiter.acquire("catalog", None, 3600)
    assert refused.value.delay_seconds == CEILING
    clock.advance(seconds=CEILING)
    limiter.acquire("catalog", None, 3600)  # free again after an hour, not 950 years


def test_a_hold_stored_past_the_ceiling_is_cut_back(db: Database, clock: FrozenClock) -> None:
    limiter = RateLimiter(db, clock)
    limiter.hold_for("catalog", 60, "wait for 60 seconds")
    with db.transaction() as session:  # as a hold written before the ceiling existed
        far = clock.now() + timedelta(days=365 * 950)
        session.execute(update(RateLimitRow).where(RateLimitRow.key == "catalog").values(held_until=far))
    with pytest.raises(RateLimited) as refused:
        limiter.acquire("catalog", None, 3600)
    assert refused.value.delay_seconds == CEILING
    assert limiter.state("catalog")["held_until"] == clock.now() + timedelta(seconds=CEILING)
    limiter.hold_for("catalog", 30, "wait for 30 seconds")  # shorter than the hold: kept
    assert limiter.state("catalog")["held_until"] == clock.now() + timedelta(seconds=CEILING)


def test_hold_until_far_future_is_cut_to_the_ceiling(db: Database, clock: FrozenClock) -> None:
    limiter = RateLimiter(db, clock)
    limiter.hold_until("catalog", clock.now() + timedelta(days=10_000), "far")
    assert limiter.state("catalog")["held_until"] == clock.now() + timedelta(seconds=CEILING)


def test_a_real_server_naming_950_years_is_waited_an_hour(simulator: object) -> None:
    """Over real HTTP: the simulator's rate limit for order status answers 429 with
    ``Retry-After: 30000000000`` and "wait for 30000000000 seconds"; the client names an hour."""
    from backlane.clients.http import request_json, shared_client

    simulator.configure(rate_limits={"orders.status": [1, 30_000_000_000]})  # type: ignore[attr-defined]
    client = shared_client(simulator.url, timeout=5.0)  # type: ignore[attr-defined]
    with pytest.raises(PermanentError):  # the first call reaches the handler: no such order
        request_json(client, "GET", "/orders/none")
    with pytest.raises(RateLimited) as told:
        request_json(client, "GET", "/orders/none")
    assert told.value.delay_seconds == CEILING
