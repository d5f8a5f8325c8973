"""Bulk jobs in the database (:class:`~backlane.db.models.BulkJob`): create, read, stop, resume.

The row is the job: what it acts on (``params``), where it is (``status``, ``done``,
``skipped``, ``total``), who holds it (``lease_until``) and what it did (``report``). Every
process reads the same row, so a job started from the dashboard is followed from the CLI,
stopped from either, and resumed by whoever asks.

Statuses: ``queued`` (waiting for a runner), ``running`` (a runner holds its lease),
``stopping`` (asked to stop; its runner stops before its next item), ``stopped`` (resumable),
``done``, ``failed`` (with the reason; resumable too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from backlane.db.engine import Database
from backlane.db.models import BulkJob
from backlane.problems import EXIT_USAGE, Problem

QUEUED, RUNNING, STOPPING, STOPPED, DONE, FAILED = "queued", "running", "stopping", "stopped", "done", "failed"
#: Statuses a runner may take a job up in (``running``/``stopping`` only once its lease has ended).
RUNNABLE = (QUEUED, RUNNING, STOPPING)
#: Statuses ``resume`` takes a job up again from.
RESUMABLE = (STOPPED, FAILED)


def aware(moment: datetime | None) -> datetime | None:
    """A timestamp as read back (SQLite gives them without their zone, always UTC here)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def create_job(db: Database, now: datetime, kind: str, params: Mapping[str, Any], created_by: str) -> int:
    """A new queued job; its id."""
    with db.transaction() as session:
        job = BulkJob(
            kind=kind,
            params=dict(params),
            status=QUEUED,
            created_at=now,
            created_by=created_by[:200],
            started_at=None,
            updated_at=now,
            finished_at=None,
            total=0,
            done=0,
            skipped=0,
            stop_requested=False,
            lease_until=None,
            report="",
        )
        session.add(job)
        session.flush()
        return int(job.id)


def get_job(db: Database, job_id: int) -> BulkJob:
    """Job ``job_id`` as it is now (detached); a :class:`Problem` when there is none."""
    with db.transaction() as session:
        job = session.get(BulkJob, job_id)
        if job is None:
            raise Problem(f"no job {job_id}: `backlane jobs list` shows the jobs there are", EXIT_USAGE)
        session.expunge(job)
    return job


def list_jobs(db: Database, limit: int = 50) -> list[BulkJob]:
    """The newest jobs first, at most ``limit``."""
    with db.transaction() as session:
        rows = list(session.scalars(select(BulkJob).order_by(BulkJob.id.desc()).limit(max(1, min(limit, 1000)))))
        session.expunge_all()
    return rows


def lease_alive(job: BulkJob, now: datetime) -> bool:
    lease = aware(job.lease_until)
    return lease is not None and lease >= now


def request_stop(db: Database, now: datetime, job_id: int) -> str:
    """Ask job ``job_id`` to stop: its runner stops before its next item (a job no runner holds
    stops at once); the line saying so. A job already finished is a :class:`Problem`."""
    with db.transaction() as session:
        job = session.get(BulkJob, job_id, with_for_update=True)
        if job is None:
            raise Problem(f"no job {job_id}: `backlane jobs list` shows the jobs there are", EXIT_USAGE)
        if job.status in (STOPPED, DONE, FAILED):
            raise Problem(f"job {job_id} is {job.status} already; nothing to stop", EXIT_USAGE)
        job.stop_requested = True
        if job.status in (RUNNING, STOPPING) and lease_alive(job, now):
            job.status = STOPPING
            job.updated_at = now
            return f"job {job_id}: asked to stop; it stops before its next item (`backlane jobs show {job_id}`)"
        # Queued (no runner yet) or its runner is gone: stopped now, nothing of it runs.
        job.status = STOPPED
        job.lease_until = None
        job.stop_requested = False
        job.report = job.report or f"stopped before it (re)started; {job.done:,} done so far"
        return f"job {job_id}: stopped; `backlane jobs resume {job_id}` continues it"


def reopen(db: Database, now: datetime, job_id: int) -> BulkJob:
    """Make job ``job_id`` runnable again (``resume``): a stopped or failed job, or one whose runner
    died (its lease ended), goes back to ``queued`` with what it did so far; a :class:`Problem`
    when it is done or a live runner holds it."""
    with db.transaction() as session:
        job = session.get(BulkJob, job_id, with_for_update=True)
        if job is None:
            raise Problem(f"no job {job_id}: `backlane jobs list` shows the jobs there are", EXIT_USAGE)
        if job.status == DONE:
            raise Problem(f"job {job_id} is done; nothing to resume", EXIT_USAGE)
        if job.status in (RUNNING, STOPPING) and lease_alive(job, now):
            raise Problem(
                f"job {job_id} is {job.status} (its runner holds it until {aware(job.lease_until):%H:%M:%S} UTC); "
                "nothing to resume",
                EXIT_USAGE,
            )
        # updated_at stays the last run's last write: the time it was active counts for its rate.
        job.status = QUEUED
        job.stop_requested = False
        job.lease_until = None
        job.finished_at = None
        job.report = ""
        session.flush()
        session.expunge(job)
    return job


def back_to_queue(db: Database, now: datetime, job_id: int, lease: datetime) -> None:
    """A runner let go of the job without finishing it (its worker shuts down): queued again."""
    with db.transaction() as session:
        session.execute(
            update(BulkJob)
            .where(BulkJob.id == job_id, BulkJob.lease_until == lease)
            .values(status=QUEUED, lease_until=None, updated_at=now)
        )


@dataclass(frozen=True)
class JobView:
    """A job as the CLI and the dashboard show it."""

    id: int
    kind: str
    params: dict[str, Any]
    status: str
    created_at: datetime
    created_by: str
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    total: int
    done: int
    skipped: int
    stop_requested: bool
    report: str
    #: Items not done yet, as of its last progress (total - done - skipped, never below 0).
    left: int
    #: done + skipped out of total, 0-100 (100 when done); None before its first count.
    percent: float | None
    #: Items (done + skipped) per second over the time it ran; None before it ran.
    rate: float | None
    #: Its status says running but its runner's lease has ended: the runner died.
    runner_lost: bool

    def as_json(self) -> dict[str, Any]:
        row = dict(self.__dict__)
        for key in ("created_at", "started_at", "updated_at", "finished_at"):
            value = row[key]
            row[key] = value.isoformat() if value is not None else None
        return row

    @property
    def progress_line(self) -> str:
        """``1,000 of 2,000 (50%), 950/s``."""
        text = f"{self.done + self.skipped:,} of {self.total:,}"
        if self.percent is not None:
            text += f" ({self.percent:.0f}%)"
        if self.rate is not None:
            text += f", {self.rate:,.0f}/s"
        if self.skipped:
            text += f"; {self.skipped:,} left in place"
        return text


def view(job: BulkJob, now: datetime) -> JobView:
    started, updated, finished = aware(job.started_at), aware(job.updated_at), aware(job.finished_at)
    assert updated is not None
    handled = job.done + job.skipped
    percent = None
    if job.status == DONE:
        percent = 100.0
    elif job.total:
        percent = min(100.0, 100.0 * handled / job.total)
    rate = None
    if started is not None:
        # started_at is shifted back by the time earlier runs were active (runner.acquire), so this
        # is the rate over the time it actually ran, not over the time it sat stopped.
        seconds = ((finished or updated) - started).total_seconds()
        if seconds > 0 and handled:
            rate = handled / seconds
    created = aware(job.created_at)
    assert created is not None
    return JobView(
        id=int(job.id),
        kind=job.kind,
        params=dict(job.params or {}),
        status=job.status,
        created_at=created,
        created_by=job.created_by,
        started_at=started,
        updated_at=updated,
        finished_at=finished,
        total=job.total,
        done=job.done,
        skipped=job.skipped,
        stop_requested=bool(job.stop_requested),
        report=job.report or "",
        left=max(0, job.total - handled),
        percent=percent,
        rate=rate,
        runner_lost=job.status in (RUNNING, STOPPING) and not lease_alive(job, now),
    )
