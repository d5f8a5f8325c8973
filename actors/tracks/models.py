"""The tracks table: media whose stored objects are physically deleted once due."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backlane import Base, BigId, literal_in


class TrackStatus(StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"  # soft-deleted; its objects and row go at delete_after
    DELETION_FAILED = "deletion_failed"  # retries spent; left for a person, with the reason


class Track(Base):
    __tablename__ = "tracks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default=TrackStatus.ACTIVE.value)
    #: Storage key of the audio object.
    audio_key: Mapped[str] = mapped_column(String(500))
    #: Storage key of the waveform object, when one was rendered.
    waveform_key: Mapped[str | None] = mapped_column(String(500))
    #: Scheduled deletion time: the physical deletion happens at or after it.
    delete_after: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(Text)
    #: Until then the track is in flight and discover leaves it alone.
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


#: The one definition of "a track waiting for its physical deletion" (due once ``delete_after``
#: has passed): ix_tracks_due's predicate and the condition of its claims and guarded writes.
TRACKS_DUE = literal_in(Track.status, [TrackStatus.DELETED.value])
Index("ix_tracks_due", Track.delete_after, postgresql_where=TRACKS_DUE, sqlite_where=TRACKS_DUE)
