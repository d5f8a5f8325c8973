"""Claims and final failures of items a pipeline lists itself (objects in a store), not rows.

A pipeline whose ``fetch`` is its own function (:class:`backlane.core.listed.ListedItems`)
has no table whose rows carry a lease and a failure reason; this one table keeps them,
per pipeline and item: a row exists only while the item is in flight (its lease) or
after it failed for good (its reason, for ``backlane status``, the dashboard and an
operator; a requeue of its dead letter removes it). A success removes the row, so the
table holds what is in flight and what failed, never what was done.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backlane.db.models.base import Base


class ListedItem(Base):
    __tablename__ = "listed_items"

    #: The registration's name.
    pipeline: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: SHA-256 of the item's text, hex: keys may be longer than an index takes.
    item_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The item itself (e.g. an object's key).
    item: Mapped[str] = mapped_column(Text)
    #: In flight until then; a later listing leaves it alone.
    lease_until: Mapped[datetime | None]
    #: Why it failed for good; set: no listing offers it again until it is requeued.
    failed_reason: Mapped[str | None] = mapped_column(Text)
    failed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
