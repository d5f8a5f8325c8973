"""The one home of backlane's configuration.

Every process-wide default lives here (broker, database, retries, the external
APIs, the worker), next to a comment saying what it means. A pipeline's own
section is declared beside the pipeline, as a :class:`PipelineSettings` subclass,
and read from ``BACKLANE_<NAME>__*`` by :mod:`backlane.core.config`. Values come from environment
variables with the ``BACKLANE_`` prefix and ``__`` between nesting levels, e.g.
``BACKLANE_ORDERS__TICK="*/2 * * * *"`` or ``BACKLANE_BROKER__URL=amqp://...``.

A bad value stops start-up with :class:`SettingsError`, whose message names the
environment variable to fix; secrets are :class:`~pydantic.SecretStr` and print
as ``**********``.
"""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backlane.errors import SettingsError

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


class StorageSettings(Section):
    #: Directory holding stored objects (track audio, waveforms) by key; relative to the working dir.
    root: str = "storage"


class ProductApiSettings(Section):
    #: Base URL of the product API the export pages through (the simulator in demo and tests).
    base_url: str = "http://127.0.0.1:8085"
    #: Sent as a bearer token when set.
    api_key: SecretStr | None = None
    #: Per-request timeout for product pages, seconds.
    timeout: float = Field(default=30.0, gt=0)


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
    worker: WorkerSettings = WorkerSettings()
    storage: StorageSettings = StorageSettings()
    product_api: ProductApiSettings = ProductApiSettings()
    #: The application: module(s) whose import registers the pipelines (what `dramatiq` is given).
    app: str = "scheduler"
    #: Logging level of backlane's loggers.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


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
