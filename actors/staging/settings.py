"""The staging pipeline's settings: ``BACKLANE_STAGING_<VENDOR>__*``."""

from __future__ import annotations

from pydantic import Field

from backlane import TableSettings
from backlane.settings import OAuthSettings


class StagingSettings(TableSettings):
    """One registration of the staging-batch handler (one vendor); each has its own section."""

    #: Base URL of the vendor's scraper API (the simulator in demo and tests).
    base_url: str = "http://127.0.0.1:8085"
    #: Per-request timeout, seconds.
    timeout: float = Field(default=30.0, gt=0)
    #: OAuth2 client credentials of the vendor's API (``BACKLANE_STAGING_<VENDOR>__OAUTH__*``).
    oauth: OAuthSettings = OAuthSettings()
