"""Fetching one catalog section from its source, through its breaker and rate limit.

Order matters: the breaker is asked first (an open circuit costs no rate-limit
budget), then the rate limit takes a slot (a refused slot frees a trial it was
given), then the call. A 429 / "wait for X seconds" answer holds every worker
off that endpoint for X seconds and says nothing about the breaker; a 5xx or a
network error counts as a failure; a 4xx does not trip the breaker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.catalog.sections import SectionSpec
from backlane.clients.auth import client_credentials
from backlane.clients.http import request_json, shared_client
from backlane.resilience import CircuitBreaker, Limit, RateLimiter
from backlane.settings import env_name
from contracts.catalog import SectionPayload

if TYPE_CHECKING:
    from actors.catalog.settings import CatalogSettings
    from backlane.core.clock import Clock
    from backlane.db.engine import Database


def source_breaker(db: Database, clock: Clock, config: CatalogSettings, spec: SectionSpec) -> CircuitBreaker:
    return CircuitBreaker(
        db,
        clock,
        spec.breaker_name,
        failure_threshold=config.breaker_failure_threshold,
        open_seconds=config.breaker_open_seconds,
        trial_seconds=max(config.sources[spec.source].timeout * 2, config.breaker_open_seconds),
    )


def source_limit(config: CatalogSettings, spec: SectionSpec) -> Limit:
    """The rate limit of the section's provider endpoint (``catalog.limiters``), held in the database."""
    limiter = config.limiters.get(spec.limiter_name)
    if limiter is None:
        return Limit(spec.rate_key, None)
    return Limit(spec.rate_key, limiter.calls, limiter.window_seconds)


def fetch_section(db: Database, clock: Clock, config: CatalogSettings, spec: SectionSpec) -> list[dict[str, Any]]:
    """The section's items as the source sends them, or a classified error."""
    source = config.sources[spec.source]
    auth = client_credentials(source.oauth, env_name(("catalog", "sources", spec.source, "oauth")))
    http = shared_client(source.base_url or config.base_url, timeout=source.timeout, auth=auth)
    with source_breaker(db, clock, config, spec).guard(), RateLimiter(db, clock).guard(source_limit(config, spec)):
        body = request_json(http, "GET", spec.path)
    return SectionPayload.model_validate(body).items
