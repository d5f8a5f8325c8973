"""The catalog pipeline's settings section (``BACKLANE_CATALOG__*``): sections, sources and their defaults."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator

from backlane import PipelineSettings
from backlane.settings import OAuthSettings, Section

#: Every catalog section: refresh interval in minutes and, for history, retention in days.
CATALOG_SECTION_DEFAULTS: dict[str, dict[str, float]] = {
    "erp_stock": {"interval_minutes": 5},
    "eshop_stock": {"interval_minutes": 10},
    "stock_taking": {"interval_minutes": 10},
    "transport": {"interval_minutes": 15},
    "lots": {"interval_minutes": 15},
    "sales": {"interval_minutes": 30, "retention_days": 365},
    "consumed_materials": {"interval_minutes": 30, "retention_days": 720},
    "purchase_history": {"interval_minutes": 60, "retention_days": 365},
    "attributes": {"interval_minutes": 60},
    "suppliers": {"interval_minutes": 120},
    "categories": {"interval_minutes": 30},
    "brands": {"interval_minutes": 30},
}
#: Each catalog source: where it is and how long a request may take.
CATALOG_SOURCE_DEFAULTS: dict[str, dict[str, float]] = {
    "catalog": {},
    "erp": {},
    "eshop": {},
    "logistics": {},
}

#: Each rate limit of a provider endpoint, named as the provider names it: its ``catalog``
#: endpoint (brands, with their products and prices) allows 2 requests an hour, its
#: ``categories`` endpoint is limited on its own; with the default 30-minute intervals each
#: section needs exactly 2 calls an hour, so neither waits on the other.
CATALOG_LIMITER_DEFAULTS: dict[str, dict[str, float]] = {
    "catalog": {"calls": 2, "window_seconds": 3600},
    "categories": {"calls": 2, "window_seconds": 3600},
}


def _merge_defaults(defaults: dict[str, dict[str, float]], kind: str):  # type: ignore[no-untyped-def]
    """Fill each entry from its defaults, so BACKLANE_CATALOG__SECTIONS__SALES__ENABLED=false
    changes one field of one section and keeps every other default; unknown names fail."""

    def merge(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        unknown = sorted(set(value) - set(defaults))
        if unknown:
            raise ValueError(f"unknown catalog {kind}: {', '.join(unknown)} (known: {', '.join(defaults)})")
        merged: dict[str, Any] = {}
        for name, base in defaults.items():
            given = value.get(name, {})
            if isinstance(given, BaseModel):
                given = given.model_dump(exclude_unset=True)
            merged[name] = {**base, **given}
        return merged

    return merge


class CatalogSectionSettings(Section):
    #: Off: discover never claims the section; its data stays as last refreshed.
    enabled: bool = True
    #: The section is due when this long has passed since its last success, minutes.
    interval_minutes: float = Field(gt=0, le=366 * 24 * 60)
    #: History sections: rows older than this are pruned, days (None: not a history section).
    retention_days: float | None = Field(default=None, gt=0, le=100 * 366)


class CatalogSourceSettings(Section):
    #: Base URL of this source (None: catalog.base_url).
    base_url: str | None = None
    #: Per-request timeout, seconds.
    timeout: float = Field(default=30.0, gt=0, le=3600)
    #: OAuth2 client credentials of this source (``BACKLANE_CATALOG__SOURCES__<NAME>__OAUTH__*``).
    oauth: OAuthSettings = OAuthSettings()


class CatalogLimiterSettings(Section):
    """One provider endpoint's rate limit (``BACKLANE_CATALOG__LIMITERS__<NAME>__CALLS``)."""

    #: Calls allowed per window, across every worker process (None: only the server's waits count).
    calls: int | None = Field(default=None, ge=1)
    #: ... per this many seconds.
    window_seconds: float = Field(default=3600.0, gt=0, le=31 * 24 * 3600)


class CatalogSettings(PipelineSettings):
    #: Discover looks every minute; each section runs on its own interval (``sections``).
    tick: str = "* * * * *"
    #: At most this many sections refresh at once, across every worker.
    max_concurrent: int = Field(default=3, ge=1)
    #: One refresh may run this long before it is interrupted (Dramatiq time limit), seconds.
    refresh_time_limit_seconds: float = Field(default=600.0, gt=0, le=24 * 3600)
    #: A claimed section is not claimed again before this long; above the time limit, seconds.
    lease_seconds: float = Field(default=660.0, gt=0, le=24 * 3600)
    #: A refresh that finds max_concurrent running tries again after this long, seconds.
    busy_recheck_seconds: float = Field(default=15.0, gt=0, le=3600)
    #: A source's breaker opens after this many failures in a row ...
    breaker_failure_threshold: int = Field(default=3, ge=1)
    #: ... for this many seconds, then one trial call decides.
    breaker_open_seconds: float = Field(default=30.0, gt=0, le=24 * 3600)
    #: Health: a section is degraded when its last success is older than this, minutes ...
    degraded_after_minutes: float = Field(default=30.0, gt=0, le=366 * 24 * 60)
    #: ... or than this many of its intervals, whichever is larger.
    degraded_interval_factor: float = Field(default=3.0, gt=0, le=1000)
    #: Base URL of every source without its own (the simulator in demo and tests).
    base_url: str = "http://127.0.0.1:8085"
    #: Fanout exchange CatalogSectionRefreshed is published to; other services bind their queues.
    event_exchange: str = "catalog.events"
    #: A bounded queue bound to it, so an event always routes and the latest ones can be read.
    event_recent_queue: str = "catalog.events.recent"
    #: Most events kept in that queue (oldest dropped first).
    event_recent_max_length: int = Field(default=1000, ge=1)
    #: Set (e.g. "SharedContracts") to also publish each event in MassTransit's envelope to the
    #: exchange "<namespace>:CatalogSectionRefreshed", for .NET MassTransit consumers ("" = off).
    event_masstransit_namespace: str = ""
    #: Interval, enabled flag and retention of each section (defaults: CATALOG_SECTION_DEFAULTS).
    sections: dict[str, CatalogSectionSettings] = Field(
        default_factory=lambda: {
            k: CatalogSectionSettings.model_validate(v) for k, v in CATALOG_SECTION_DEFAULTS.items()
        }
    )
    #: Base URL and timeout of each source (defaults: CATALOG_SOURCE_DEFAULTS).
    sources: dict[str, CatalogSourceSettings] = Field(
        default_factory=lambda: {k: CatalogSourceSettings.model_validate(v) for k, v in CATALOG_SOURCE_DEFAULTS.items()}
    )
    #: Rate limit of each provider endpoint, by the provider's name for it (defaults: CATALOG_LIMITER_DEFAULTS).
    limiters: dict[str, CatalogLimiterSettings] = Field(
        default_factory=lambda: {
            k: CatalogLimiterSettings.model_validate(v) for k, v in CATALOG_LIMITER_DEFAULTS.items()
        }
    )

    #: Changed at runtime (`backlane settings set`) besides the common ones: its own limits.
    runtime_fields: ClassVar[tuple[str, ...]] = (
        *PipelineSettings.runtime_fields,
        "max_concurrent",
        "breaker_failure_threshold",
        "breaker_open_seconds",
        "limiters.*.calls",
        "limiters.*.window_seconds",
        "sections.*.interval_minutes",
    )

    _sections = field_validator("sections", mode="before")(_merge_defaults(CATALOG_SECTION_DEFAULTS, "sections"))
    _sources = field_validator("sources", mode="before")(_merge_defaults(CATALOG_SOURCE_DEFAULTS, "sources"))
    _limiters = field_validator("limiters", mode="before")(_merge_defaults(CATALOG_LIMITER_DEFAULTS, "limiters"))

    def with_section(self, name: str, **changes: Any) -> CatalogSettings:
        """A copy with one section changed (validated), for tests and tools."""
        section = CatalogSectionSettings.model_validate({**self.sections[name].model_dump(), **changes})
        return self.model_copy(update={"sections": {**self.sections, name: section}})

    def with_source(self, name: str, **changes: Any) -> CatalogSettings:
        source = CatalogSourceSettings.model_validate({**self.sources[name].model_dump(), **changes})
        return self.model_copy(update={"sources": {**self.sources, name: source}})

    def with_limiter(self, name: str, **changes: Any) -> CatalogSettings:
        limiter = CatalogLimiterSettings.model_validate({**self.limiters[name].model_dump(), **changes})
        return self.model_copy(update={"limiters": {**self.limiters, name: limiter}})
