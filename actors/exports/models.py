"""Exports (what to write, when, and how far the current run got), their run history,
and the outage memory that makes "product API down" a once-per-outage log line."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from backlane import Base, BigId


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"  # JSON Lines: one product object per line


class ExportOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Export(Base):
    """One export to keep fresh. While a run is unfinished, ``run_id`` names it and
    ``next_page``/``partial_bytes`` say how far its partial file got, so a retry or
    the next run resumes there instead of starting over."""

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    format: Mapped[str] = mapped_column(String(8))
    #: File to write, relative to exports.output_dir (a path leading out of it is refused).
    path: Mapped[str] = mapped_column(String(500))
    #: Seconds between two runs of this export; NULL: exports.interval_seconds.
    interval_seconds: Mapped[float | None] = mapped_column(Float)
    #: When the next run is due; NULL until discover first sees the export.
    next_run_at: Mapped[datetime | None]
    #: Until then the export is in flight and discover leaves it alone.
    lease_until: Mapped[datetime | None]
    #: The unfinished run, if any, and its progress.
    run_id: Mapped[int | None] = mapped_column(BigInteger)
    # Defaults live in the database too (migration 0005), so a plain SQL insert of
    # name, format and path defines an export.
    next_page: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    rows_written: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    partial_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    last_success_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=text("CURRENT_TIMESTAMP"))
    updated_at: Mapped[datetime] = mapped_column(server_default=text("CURRENT_TIMESTAMP"))

    __table_args__ = (
        Index("ix_exports_due", "next_run_at"),
        CheckConstraint("format IN ('csv', 'jsonl')", name="ck_exports_format"),
        CheckConstraint("interval_seconds IS NULL OR interval_seconds > 0", name="ck_exports_interval"),
    )


class ExportRun(Base):
    """History: one row per run, with its outcome."""

    __tablename__ = "export_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    export_id: Mapped[int] = mapped_column(BigId, ForeignKey("exports.id", ondelete="CASCADE"))
    outcome: Mapped[str] = mapped_column(String(16), default=ExportOutcome.RUNNING.value)
    #: Page this run started at: 1, or where an earlier failed run stopped.
    first_page: Mapped[int] = mapped_column(Integer, default=1)
    #: Products and pages in the file so far (including pages of a run it resumed).
    rows: Mapped[int] = mapped_column(Integer, default=0)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    file_path: Mapped[str | None] = mapped_column(String(1000))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_export_runs_export", "export_id", "started_at"),)


class ServiceOutage(Base):
    """Whether an outside service is known to be down, shared by every process."""

    __tablename__ = "service_outages"

    service: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: Set when the outage was first seen; NULL while the service is up.
    down_since: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    checked_at: Mapped[datetime | None]
