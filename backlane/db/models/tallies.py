"""Counts of work whose rows are gone: a pipeline that deletes its rows when done
(tracks) adds to its tally in the same transaction, so status can show what it did."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from backlane.db.models.base import Base


class PipelineTally(Base):
    __tablename__ = "pipeline_tallies"

    #: The registration's name (e.g. ``tracks``).
    pipeline: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: Items finished whose rows were deleted, since the table was created.
    done: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    updated_at: Mapped[datetime]


def add_done(session: Session, pipeline: str, now: datetime, count: int = 1) -> None:
    """Add ``count`` to ``pipeline``'s tally, in the caller's transaction (with the deletion it counts)."""
    from backlane.db.rows import locked_row

    row = locked_row(session, PipelineTally, {"pipeline": pipeline}, {"done": 0, "updated_at": now})
    row.done += count
    row.updated_at = now
