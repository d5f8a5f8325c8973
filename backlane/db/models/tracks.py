"""The tracks table: media whose stored objects are physically deleted once due."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from backlane.db.models.base import Base, BigId


class TrackStatus(StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"  # soft-deleted; its objects and row go at delete_after
    DELETION_FAILED = "deletion_failed"  # retries spent; left for a person, with the reason


#: Must match TRACKS_DUE in backlane.db.claims word for word.
_DELETED_SQL = "status = 'deleted'"


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

    __table_args__ = (
        Index(
            "ix_tracks_due",
            "delete_after",
            postgresql_where=text(_DELETED_SQL),
            sqlite_where=text(_DELETED_SQL),
        ),
    )
