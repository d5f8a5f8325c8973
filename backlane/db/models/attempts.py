"""How often an item was tried in its latest run, and how its last recorded try ended.

Written by :mod:`backlane.core.attempts` only when a try is not a first-try success
(a retryable failure, a final failure, a success after failures): the common case
writes nothing, and the dashboard reads a row without a record as "one try".
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backlane.db.models.base import Base

#: What ``last_outcome`` holds.
RETRYING, FAILED, SUCCEEDED = "retrying", "failed", "succeeded"


class ItemAttempts(Base):
    __tablename__ = "item_attempts"

    #: The registration's name (e.g. ``orders``).
    pipeline: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: The item's row id, as text.
    item_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: Tries in the item's latest run (the failures its message has had, plus one).
    attempts: Mapped[int] = mapped_column(Integer)
    #: How the latest recorded try ended: ``retrying``, ``failed`` or ``succeeded``.
    last_outcome: Mapped[str] = mapped_column(String(20))
    #: The reason of the latest failed try (cut to a few hundred characters), kept by a later success.
    last_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]
