"""The embeddings API as a photo registration sees it: its breaker, shared by every process."""

from __future__ import annotations

from typing import Any

from actors.photos.settings import PhotosSettings
from backlane import Context, Health, HealthRow
from backlane.resilience.breaker import CLOSED, CircuitBreaker

#: A trial call holds the breaker this much longer than the request's timeout, seconds.
TRIAL_MARGIN_SECONDS = 5.0


def breaker_name(pipeline: str) -> str:
    return f"{pipeline}_embeddings"


def breaker_for(ctx: Context[PhotosSettings]) -> CircuitBreaker:
    """This registration's embeddings-API breaker (its state is in the database)."""
    config = ctx.config
    return CircuitBreaker(
        ctx.db,
        ctx.clock,
        breaker_name(ctx.pipeline.name),
        config.breaker_failure_threshold,
        config.breaker_open_seconds,
    )


def health(ctx: Context[PhotosSettings]) -> list[HealthRow]:
    """One row: the embeddings API (provider, model, breaker, its last failure)."""
    config = ctx.config
    state: dict[str, Any] = breaker_for(ctx).state()
    breaker = str(state["state"])
    last_failure = state.get("last_failure_reason") or ""
    return [
        HealthRow(
            "embeddings_api",
            Health.HEALTHY if breaker == CLOSED else Health.DEGRADED,
            summary=f"{config.provider} model {config.model_version}, breaker={breaker}",
            columns={
                "provider": config.provider,
                "model": config.model_version,
                "dimensions": str(config.dimensions),
                "breaker": breaker,
                "last failure": last_failure[:200] or "-",
            },
            details={
                "provider": config.provider,
                "base_url": config.base_url,
                "model_version": config.model_version,
                "dimensions": config.dimensions,
                "breaker": breaker,
                "consecutive_failures": state.get("consecutive_failures", 0),
                "times_opened": state.get("times_opened", 0),
                "last_failure_reason": last_failure or None,
            },
        )
    ]
