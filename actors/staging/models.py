"""The staging_batches table: work items of the generic engine, each waiting for a named processor.

A batch's ``processor`` is the name of the pipeline registration that handles
it (e.g. ``staging_acme``), so one handler registered twice reads two disjoint
queues of rows.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backlane import Base, BigId, literal_in


class StagingStatus(StrEnum):
    PENDING = "pending"  # waiting for its processor
    PROCESSING = "processing"  # claimed; a message is on its way or in work
    COMPLETED = "completed"
    FAILED = "failed"


class StagingBatch(Base):
    __tablename__ = "staging_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: Name of the registration that processes this batch.
    processor: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=StagingStatus.PENDING.value)
    #: Why the batch failed (or a note on how it completed).
    reason: Mapped[str | None] = mapped_column(Text)
    #: Until then the batch is in flight and discover leaves it alone.
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


#: The one definition of "a batch with work left": ix_staging_batches_due's predicate and the
#: condition of its claims, status counts and guarded writes (each processor reads its own slice).
STAGING_DUE = literal_in(StagingBatch.status, [StagingStatus.PENDING.value, StagingStatus.PROCESSING.value])
Index(
    "ix_staging_batches_due",
    StagingBatch.processor,
    StagingBatch.created_at,
    postgresql_where=STAGING_DUE,
    sqlite_where=STAGING_DUE,
)
