"""Resilience shared by every worker process: circuit breakers and rate limits.

Both keep their state in the database (:mod:`backlane.db.models.resilience`),
so a limit of "2 requests an hour" or "one trial call" holds for the whole
deployment, not per process. Both refuse a call by raising a
:class:`~backlane.errors.DelayedRetry` (``CircuitOpen`` / ``RateLimited``) that
names the exact delay, which :mod:`backlane.core.processing` turns into a retry then.

Typical use around one outside call::

    breaker = CircuitBreaker(db, clock, "source:erp", failure_threshold=3, open_seconds=30)
    limiter = RateLimiter(db, clock)
    with breaker.guard(), limiter.guard(Limit("catalog", calls=2, window_seconds=3600)):
        data = request_json(client, "GET", "/catalog/brands")
"""

from backlane.resilience.breaker import CLOSED, HALF_OPEN, OPEN, BreakerSnapshot, CircuitBreaker
from backlane.resilience.rate_limit import Limit, RateLimiter, take_slot

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "BreakerSnapshot",
    "CircuitBreaker",
    "Limit",
    "RateLimiter",
    "take_slot",
]
