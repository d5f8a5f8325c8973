"""The one home of backlane's configuration.

Every default a pipeline runs with lives here, next to a comment saying what it
means, so that actors never carry magic numbers. Values come from environment
variables with the ``BACKLANE_`` prefix and ``__`` between nesting levels, e.g.
``BACKLANE_ORDERS__TICK="*/2 * * * *"`` or ``BACKLANE_BROKER__URL=amqp://...``.

A bad value stops start-up with :class:`SettingsError`, whose message names the
environment variable to fix; secrets are :class:`~pydantic.SecretStr` and print
as ``**********``.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "BACKLANE_"
ENV_NESTED_DELIMITER = "__"


def _validate_cron(value: str) -> str:
    """Reject a cron spec periodiq would choke on only at the first tick."""
    from periodiq import cron

    try:
        cron(value)
    except Exception as exc:  # periodiq raises assorted errors for bad specs
        raise ValueError(f"not a valid cron spec ({exc.__class__.__name__}: {exc})") from None
    return value


class Section(BaseModel):
    """Base of every settings section: unknown keys are typos, so they fail."""

    model_config = {"extra": "forbid"}


class BrokerSettings(Section):
    #: AMQP URL of RabbitMQ; several URLs separated by ';' for a cluster.
    url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/%2F")
    #: Management API of the same node, read by `backlane status` and `dead-letters`.
    management_url: str = "http://127.0.0.1:15672"
    management_user: str = "guest"
    management_password: SecretStr = SecretStr("guest")
    #: "classic" for a single node, "quorum" for a replicated RabbitMQ cluster.
    queue_type: Literal["classic", "quorum"] = "classic"
    #: Messages a worker process holds per queue (RabbitMQ basic.qos); 0 = Dramatiq's 2 x threads.
    prefetch: int = Field(default=0, ge=0, le=65535)
    #: How long a command keeps trying while RabbitMQ is unreachable, seconds (workers and the clock wait for ever).
    reconnect_timeout: float = Field(default=120.0, gt=0)
    #: Dead letters are kept this long in the .XQ queues, milliseconds (7 days).
    dead_letter_ttl_ms: int = Field(default=7 * 24 * 3600 * 1000, gt=0)


class RetrySettings(Section):
    #: Dramatiq retries per message before the item is marked failed.
    max_retries: int = Field(default=10, ge=0)
    #: First backoff, milliseconds; doubles on each retry (with jitter).
    min_backoff_ms: int = Field(default=15_000, ge=1)
    #: Backoff ceiling, milliseconds.
    max_backoff_ms: int = Field(default=15 * 60_000, ge=1)
    #: Hard limit on one message's processing time, milliseconds.
    time_limit_ms: int = Field(default=10 * 60_000, ge=1000)
    #: A message older than this is let go unworked, never dead-lettered (its row stays due
    #: and discover offers it again), ms. Requeued dead letters count from their requeue.
    max_age_ms: int = Field(default=24 * 3600_000, ge=1000)


class DatabaseSettings(Section):
    #: SQLAlchemy URL. SQLite needs nothing installed; PostgreSQL for production.
    url: SecretStr = SecretStr("sqlite:///backlane.db")
    #: Connections per worker process (PostgreSQL).
    pool_size: int = Field(default=10, ge=1)
    #: Echo SQL to the log (debugging only).
    echo: bool = False


class OrderApiSettings(Section):
    #: Base URL of the external order API (the simulator in demo and tests).
    base_url: str = "http://127.0.0.1:8085"
    #: Sent as a bearer token when set.
    api_key: SecretStr | None = None
    #: Per-request timeout, seconds.
    timeout: float = Field(default=10.0, gt=0)


class PipelineSettings(Section):
    """What every pipeline's section has; retry fields left unset use ``retries``."""

    #: Off: the clock skips the pipeline and discover does nothing.
    enabled: bool = True
    #: Discover tick (cron, minute resolution).
    tick: str = "* * * * *"
    #: Most items one tick claims and enqueues; extra ones wait for the next tick.
    max_items: int = Field(default=500, ge=1)
    #: Failures per item before it is marked failed (default: retries.max_retries).
    max_retries: int | None = Field(default=None, ge=0)
    #: First backoff, ms (default: retries.min_backoff_ms).
    min_backoff_ms: int | None = Field(default=None, ge=1)
    #: Backoff ceiling, ms (default: retries.max_backoff_ms).
    max_backoff_ms: int | None = Field(default=None, ge=1)

    _cron = field_validator("tick")(_validate_cron)


class OrdersSettings(PipelineSettings):
    #: Every minute, as the order-queue service did.
    tick: str = "* * * * *"
    #: Orders created within this window are claimed first, hours.
    recent_window_hours: float = Field(default=24.0, gt=0)
    #: A claimed order is not claimed again before this many seconds (its lease).
    lease_seconds: float = Field(default=600.0, gt=0)
    #: Wait between two status checks of a placed order, seconds.
    status_poll_seconds: float = Field(default=5.0, gt=0)
    #: An OrderCreated whose row is not visible yet is retried this long, seconds.
    created_grace_seconds: float = Field(default=60.0, gt=0)
    #: Delay between two looks for a not-yet-visible order, seconds.
    created_recheck_seconds: float = Field(default=2.0, gt=0)


class StorageSettings(Section):
    #: Directory holding stored objects (track audio, waveforms) by key; relative to the working dir.
    root: str = "storage"


class TracksSettings(PipelineSettings):
    #: Every 5 minutes, as the physical-deletion service did.
    tick: str = "*/5 * * * *"
    #: At most 50 tracks per tick, as before.
    max_items: int = Field(default=50, ge=1)
    #: A claimed track is not claimed again before this many seconds (its lease).
    lease_seconds: float = Field(default=600.0, gt=0)


class ProductApiSettings(Section):
    #: Base URL of the product API the export pages through (the simulator in demo and tests).
    base_url: str = "http://127.0.0.1:8085"
    #: Sent as a bearer token when set.
    api_key: SecretStr | None = None
    #: Per-request timeout for product pages, seconds.
    timeout: float = Field(default=30.0, gt=0)


class ExportsSettings(PipelineSettings):
    #: Discover looks for due exports every minute; each export runs on its own interval.
    tick: str = "* * * * *"
    #: Time between two runs of one export, seconds (5 min, as the export worker).
    interval_seconds: float = Field(default=300.0, gt=0)
    #: A new export first runs this long after it is created or first seen, seconds.
    initial_delay_seconds: float = Field(default=30.0, ge=0)
    #: 3 attempts per run: 2 retries after the first failure.
    max_retries: int | None = Field(default=2, ge=0)
    #: First backoff 30 s, doubling ...
    min_backoff_ms: int | None = Field(default=30_000, ge=1)
    #: ... to at most 300 s.
    max_backoff_ms: int | None = Field(default=300_000, ge=1)
    #: The product-API breaker opens after this many failures in a row ...
    breaker_failure_threshold: int = Field(default=3, ge=1)
    #: ... for this many seconds.
    breaker_open_seconds: float = Field(default=30.0, gt=0)
    #: The health check (GET /health) gives up after this many seconds and counts as down.
    health_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Products per page requested from the product API.
    page_size: int = Field(default=100, ge=1)
    #: A claimed export is not claimed again before this many seconds; renewed on every page.
    lease_seconds: float = Field(default=600.0, gt=0)
    #: Directory export files are written to (an export's relative path is under it).
    output_dir: str = "exports"


class StagingSettings(PipelineSettings):
    """One registration of the staging-batch handler (one vendor); each has its own section."""

    #: Base URL of the vendor's scraper API (the simulator in demo and tests).
    base_url: str = "http://127.0.0.1:8085"
    #: Per-request timeout, seconds.
    timeout: float = Field(default=30.0, gt=0)
    #: A claimed batch is not claimed again before this many seconds (its lease).
    lease_seconds: float = Field(default=600.0, gt=0)


# One subclass per registration, so an env var setting one field keeps the others' defaults.
class StagingAcmeSettings(StagingSettings):
    #: Vendor acme: 5 batches per cycle.
    max_items: int = Field(default=5, ge=1)


class StagingGlobexSettings(StagingSettings):
    #: Vendor globex: 10 batches per cycle.
    max_items: int = Field(default=10, ge=1)


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
#: Each catalog source; the catalog provider's endpoint allows 2 requests an hour.
CATALOG_SOURCE_DEFAULTS: dict[str, dict[str, float]] = {
    "catalog": {"rate_limit_calls": 2, "rate_limit_window_seconds": 3600},
    "erp": {},
    "eshop": {},
    "logistics": {},
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
    interval_minutes: float = Field(gt=0)
    #: History sections: rows older than this are pruned, days (None: not a history section).
    retention_days: float | None = Field(default=None, gt=0)


class CatalogSourceSettings(Section):
    #: Base URL of this source (None: catalog.base_url).
    base_url: str | None = None
    #: Per-request timeout, seconds.
    timeout: float = Field(default=30.0, gt=0)
    #: Calls to this source allowed per window, across every worker (None: no limit of our own).
    rate_limit_calls: int | None = Field(default=None, ge=1)
    #: ... per this many seconds.
    rate_limit_window_seconds: float = Field(default=3600.0, gt=0)


class CatalogSettings(PipelineSettings):
    #: Discover looks every minute; each section runs on its own interval (``sections``).
    tick: str = "* * * * *"
    #: At most this many sections refresh at once, across every worker.
    max_concurrent: int = Field(default=3, ge=1)
    #: One refresh may run this long before it is interrupted (Dramatiq time limit), seconds.
    refresh_time_limit_seconds: float = Field(default=600.0, gt=0)
    #: A claimed section is not claimed again before this long; above the time limit, seconds.
    lease_seconds: float = Field(default=660.0, gt=0)
    #: A refresh that finds max_concurrent running tries again after this long, seconds.
    busy_recheck_seconds: float = Field(default=15.0, gt=0)
    #: A source's breaker opens after this many failures in a row ...
    breaker_failure_threshold: int = Field(default=3, ge=1)
    #: ... for this many seconds, then one trial call decides.
    breaker_open_seconds: float = Field(default=30.0, gt=0)
    #: Health: a section is degraded when its last success is older than this, minutes ...
    degraded_after_minutes: float = Field(default=30.0, gt=0)
    #: ... or than this many of its intervals, whichever is larger.
    degraded_interval_factor: float = Field(default=3.0, gt=0)
    #: Base URL of every source without its own (the simulator in demo and tests).
    base_url: str = "http://127.0.0.1:8085"
    #: Fanout exchange CatalogSectionRefreshed is published to; other services bind their queues.
    event_exchange: str = "catalog.events"
    #: A bounded queue bound to it, so an event always routes and the latest ones can be read.
    event_recent_queue: str = "catalog.events.recent"
    #: Most events kept in that queue (oldest dropped first).
    event_recent_max_length: int = Field(default=1000, ge=1)
    #: Interval, enabled flag and retention of each section (defaults: CATALOG_SECTION_DEFAULTS).
    sections: dict[str, CatalogSectionSettings] = Field(
        default_factory=lambda: {
            k: CatalogSectionSettings.model_validate(v) for k, v in CATALOG_SECTION_DEFAULTS.items()
        }
    )
    #: Base URL, timeout and rate limit of each source (defaults: CATALOG_SOURCE_DEFAULTS).
    sources: dict[str, CatalogSourceSettings] = Field(
        default_factory=lambda: {k: CatalogSourceSettings.model_validate(v) for k, v in CATALOG_SOURCE_DEFAULTS.items()}
    )

    _sections = field_validator("sections", mode="before")(_merge_defaults(CATALOG_SECTION_DEFAULTS, "sections"))
    _sources = field_validator("sources", mode="before")(_merge_defaults(CATALOG_SOURCE_DEFAULTS, "sources"))

    def with_section(self, name: str, **changes: Any) -> CatalogSettings:
        """A copy with one section changed (validated), for tests and tools."""
        section = CatalogSectionSettings.model_validate({**self.sections[name].model_dump(), **changes})
        return self.model_copy(update={"sections": {**self.sections, name: section}})

    def with_source(self, name: str, **changes: Any) -> CatalogSettings:
        source = CatalogSourceSettings.model_validate({**self.sources[name].model_dump(), **changes})
        return self.model_copy(update={"sources": {**self.sources, name: source}})


class WorkerSettings(Section):
    #: Port of the worker's /health and /metrics (Prometheus) endpoint; 0 turns both off.
    metrics_port: int = Field(default=9191, ge=0, le=65535)
    #: Address that endpoint listens on (0.0.0.0 so a container's port can be published).
    metrics_host: str = "0.0.0.0"
    #: Where worker processes share their Prometheus counters (default: a per-port temp dir).
    metrics_dir: str | None = None


class Settings(BaseSettings):
    """Everything backlane reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="ignore",
        case_sensitive=False,
    )

    broker: BrokerSettings = BrokerSettings()
    retries: RetrySettings = RetrySettings()
    database: DatabaseSettings = DatabaseSettings()
    order_api: OrderApiSettings = OrderApiSettings()
    orders: OrdersSettings = OrdersSettings()
    worker: WorkerSettings = WorkerSettings()
    storage: StorageSettings = StorageSettings()
    tracks: TracksSettings = TracksSettings()
    product_api: ProductApiSettings = ProductApiSettings()
    exports: ExportsSettings = ExportsSettings()
    staging_acme: StagingAcmeSettings = StagingAcmeSettings()
    staging_globex: StagingGlobexSettings = StagingGlobexSettings()
    catalog: CatalogSettings = CatalogSettings()
    #: Logging level of backlane's loggers.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class SettingsError(RuntimeError):
    """A setting is invalid; the message names the environment variable."""


def env_name(location: tuple[str | int, ...]) -> str:
    """The environment variable that sets the value at ``location``."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part) for part in location).upper()


def load_settings() -> Settings:
    """Read settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [f"  {env_name(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise SettingsError("invalid backlane settings:\n" + "\n".join(problems)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
