"""The tracks pipeline's settings: ``BACKLANE_TRACKS__*``."""

from __future__ import annotations

from pydantic import Field

from backlane import TableSettings


class TracksSettings(TableSettings):
    #: Every 5 minutes, as the physical-deletion service did.
    tick: str = "*/5 * * * *"
    #: At most 50 tracks per tick, as before.
    max_items: int = Field(default=50, ge=1)
