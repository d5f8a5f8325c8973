"""The storage cleanup pipeline's settings: ``BACKLANE_CLEANUP__*``."""

from __future__ import annotations

from pydantic import Field, field_validator

from backlane import PipelineSettings
from backlane.clients.storage import InvalidKey, checked_prefix


class CleanupSettings(PipelineSettings):
    #: Every 15 minutes: a stale object waits at most that long past its age.
    tick: str = "*/15 * * * *"
    #: Objects deleted per tick at most, as the blob-cleanup handler's maxItems; more wait a tick.
    max_items: int = Field(default=100, ge=1, le=10_000)
    #: Only objects whose key starts with this are listed and deleted (never "": the whole store).
    prefix: str = Field(default="search-images/", min_length=1, max_length=512)
    #: An object is stale, and deleted, once last modified more than this many hours ago.
    max_age_hours: float = Field(default=24.0, gt=0, le=24 * 3650)
    #: A listed object is not offered again for this many seconds (its claim's lease).
    lease_seconds: float = Field(default=600.0, gt=0, le=7 * 24 * 3600)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        try:
            return checked_prefix(value)
        except InvalidKey as exc:
            raise ValueError(exc.reason) from None
