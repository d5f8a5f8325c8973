"""The exports pipeline's settings: ``BACKLANE_EXPORTS__*``, its product API's included."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pydantic import Field

from backlane import TableSettings
from backlane.settings import ApiSettings

#: The product API's variables before they moved into the exports section, still read.
FORMER_VARIABLES = {
    "base_url": "PRODUCT_API__BASE_URL",
    "api_key": "PRODUCT_API__API_KEY",
    "timeout": "PRODUCT_API__TIMEOUT",
}


class ExportsSettings(TableSettings, ApiSettings):
    """The exports pipeline, and the product API it pages through (``GET /health``, ``GET
    /products``): ``BACKLANE_EXPORTS__BASE_URL``, ``__API_KEY``, ``__TIMEOUT`` (formerly
    ``BACKLANE_PRODUCT_API__*``)."""

    #: Discover looks for due exports every minute; each export runs on its own interval.
    tick: str = "* * * * *"
    #: Time between two runs of one export, seconds (5 min, as the export worker).
    interval_seconds: float = Field(default=300.0, gt=0, le=366 * 24 * 3600)
    #: A new export first runs this long after it is created or first seen, seconds.
    initial_delay_seconds: float = Field(default=30.0, ge=0, le=366 * 24 * 3600)
    #: 3 attempts per run: 2 retries after the first failure.
    max_retries: int | None = Field(default=2, ge=0)
    #: First backoff 30 s, doubling ...
    min_backoff_ms: int | None = Field(default=30_000, ge=1, le=24 * 3600_000)
    #: ... to at most 300 s.
    max_backoff_ms: int | None = Field(default=300_000, ge=1, le=24 * 3600_000)
    #: The product-API breaker opens after this many failures in a row ...
    breaker_failure_threshold: int = Field(default=3, ge=1)
    #: ... for this many seconds.
    breaker_open_seconds: float = Field(default=30.0, gt=0, le=24 * 3600)
    #: Changed at runtime (`backlane settings set`) besides the common ones: its own limits.
    runtime_fields: ClassVar[tuple[str, ...]] = (
        *TableSettings.runtime_fields,
        "breaker_failure_threshold",
        "breaker_open_seconds",
    )
    #: The health check (GET /health) gives up after this many seconds and counts as down.
    health_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    #: Products per page requested from the product API.
    page_size: int = Field(default=100, ge=1)
    #: Directory export files are written to (an export's relative path is under it).
    output_dir: str = "exports"
    #: Per-request timeout for product pages, seconds.
    timeout: float = Field(default=30.0, gt=0, le=3600)

    env_aliases: ClassVar[Mapping[str, str]] = FORMER_VARIABLES
