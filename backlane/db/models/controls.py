"""What operators change in a running system, kept where every process already looks: the database.

* :class:`Pause`: a pipeline, a part of one (a catalog section) or its inbox paused, by whom and
  why; a row exists only while paused. Workers and the clock read these every few seconds
  (:mod:`backlane.core.controls`), so a pause needs no restart and survives one.
* :class:`SettingOverride`: a pipeline setting changed at runtime, over the environment's value;
  removing the row reverts to it.
* :class:`AuditEvent`: every operator action (who, what, on what, the outcome), kept for
  ``BACKLANE_AUDIT__KEEP_DAYS``.
* :class:`BulkJob`: a bulk action (requeue all, purge, cancel a selection) run as a job of its
  own, with its progress, so no request or command has to hold it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backlane.db.models.base import Base, BigId

#: ``Pause.part`` of a pause of the whole pipeline.
WHOLE_PIPELINE = ""
#: ``Pause.part`` of a pause of the pipeline's inbox (what other services publish to it).
INBOX_PART = "@inbox"


class Pause(Base):
    __tablename__ = "pauses"

    #: The registration's name.
    pipeline: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: What of it: the whole pipeline (""), its inbox ("@inbox"), or one of its parts by name.
    part: Mapped[str] = mapped_column(String(200), primary_key=True, default=WHOLE_PIPELINE)
    paused_at: Mapped[datetime]
    paused_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")


class SettingOverride(Base):
    __tablename__ = "setting_overrides"

    pipeline: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: The setting's path in the pipeline's section, dotted (``max_items``, ``limiters.catalog.calls``).
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: The value as JSON, validated by the section's own class before it was written.
    value: Mapped[Any] = mapped_column(JSON)
    set_at: Mapped[datetime]
    set_by: Mapped[str] = mapped_column(String(200))


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    #: ``dashboard:<user>`` or ``cli:<OS user>``.
    actor: Mapped[str] = mapped_column(String(200))
    #: pause, resume, set, unset, cancel, reopen, trigger, requeue, purge, job-stop, ...
    action: Mapped[str] = mapped_column(String(50))
    #: What it acted on: a pipeline, ``catalog electronics``, a queue, a job.
    target: Mapped[str] = mapped_column(String(300))
    #: What was asked, in words (the values, the selection, the reason given).
    detail: Mapped[str] = mapped_column(Text, default="")
    #: ok, refused or failed.
    outcome: Mapped[str] = mapped_column(String(20))
    #: The line the operator was answered with.
    result: Mapped[str] = mapped_column(Text, default="")


class BulkJob(Base):
    __tablename__ = "bulk_jobs"
    __table_args__ = (Index("ix_bulk_jobs_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: requeue, purge or cancel.
    kind: Mapped[str] = mapped_column(String(30))
    #: What it acts on (queue, pipeline, search), as given.
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: queued, running, stopping, stopped, done, failed.
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    #: Items it found when it (last) started, and those done so far over all its runs.
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    #: Left in place (not matching, truncated, already settled), over all its runs.
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    #: An operator asked it to stop; it stops between two items.
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Held by a runner until then (a runner that died lets another take it up).
    lease_until: Mapped[datetime | None]
    #: What it did, in one line, once stopped, done or failed.
    report: Mapped[str] = mapped_column(Text, default="")
