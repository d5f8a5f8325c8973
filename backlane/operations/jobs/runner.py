"""Run one bulk job: take its lease, work item by item through its kind, write progress, stop
cleanly when asked, and write how it ended.

* **One runner at a time.** A runner takes the job with one conditional ``UPDATE`` (status
  runnable and no live lease), setting ``lease_until``; a second runner of the same job finds
  the lease and does nothing. The lease is renewed at every progress write, and every write
  names the lease it holds, so a runner that lost it (it stalled past its lease and another took
  over) writes nothing more and stops. A runner that died lets another take over once its
  lease ends (``backlane jobs resume``, or the worker's redelivered message).
* **Progress** (``done``, ``skipped``, ``total``, ``updated_at``) is written at most every
  :data:`CHECK_SECONDS` or :data:`CHECK_ITEMS` items, and ``stop_requested`` read at the same
  time; the kind stops before its next item once asked (items not done stay where they are).
* **Resume = run again**: ``done`` and ``skipped`` accumulate, ``total`` is ``done`` plus what
  is left when the run starts.
* **How it ended**: ``done`` (``finished_at``, the report line), ``stopped`` (resumable), or
  ``failed`` with the one-line reason of :func:`backlane.problems.explain`; each in the audit trail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, or_, select, update

from backlane.db.models import BulkJob
from backlane.errors import named_cause
from backlane.operations import audit
from backlane.operations.jobs import store
from backlane.operations.jobs.kinds import kind_of
from backlane.problems import EXIT_UNAVAILABLE, Problem, explain

if TYPE_CHECKING:
    from backlane.core.runtime import Runtime

logger = logging.getLogger("backlane.jobs")

#: A runner's lease on its job, seconds; renewed at every progress write (twice a second).
LEASE_SECONDS = 30.0
#: Progress is written (and a stop looked for) at most this often, seconds...
CHECK_SECONDS = 0.5
#: ...or every this many items, whichever comes first.
CHECK_ITEMS = 500


def _rows(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


@dataclass(frozen=True)
class Outcome:
    """What one call of :func:`run_job` did."""

    job_id: int
    #: False: nothing ran (another runner holds the job, or it is finished or stopped).
    ran: bool
    status: str
    line: str
    problem: Problem | None = None


class _Progress:
    """The kind's :class:`~.kinds.Progress`: counts in memory, written at checkpoints."""

    def __init__(
        self,
        runtime: Runtime,
        job: BulkJob,
        lease: datetime,
        lease_seconds: float,
        interrupted: Callable[[], bool],
        on_progress: Callable[[store.JobView], None] | None,
    ) -> None:
        self.runtime, self.job_id, self.lease, self.lease_seconds = runtime, int(job.id), lease, lease_seconds
        self.done, self.skipped, self.total = job.done, job.skipped, job.total
        self.run_start = self.done + self.skipped
        self.interrupted, self.on_progress = interrupted, on_progress
        self.stopping = False
        #: Another runner holds the job now: write nothing more.
        self.lost = False
        self.started = self.last = time.monotonic()
        self.since = 0

    def advance(self, done: int = 0, skipped: int = 0) -> None:
        self.done += done
        self.skipped += skipped
        self.since += done + skipped
        if self.since >= CHECK_ITEMS or time.monotonic() - self.last >= CHECK_SECONDS:
            self.checkpoint()

    def should_stop(self) -> bool:
        if not self.stopping and self.interrupted():
            self.stopping = True
        if not self.stopping and time.monotonic() - self.last >= CHECK_SECONDS:
            self.checkpoint()
        return self.stopping

    def pace(self, rate: float | None) -> None:
        if not rate or rate <= 0:
            return
        while not self.should_stop():
            ahead = (self.done + self.skipped - self.run_start) / rate - (time.monotonic() - self.started)
            if ahead <= 0:
                return
            time.sleep(min(ahead, 0.05))

    def checkpoint(self, **extra: Any) -> None:
        """Write the counts and renew the lease, naming the lease held; read ``stop_requested``."""
        if self.lost:
            return
        now = self.runtime.clock.now()
        lease = max(now + timedelta(seconds=self.lease_seconds), self.lease + timedelta(microseconds=1))
        with self.runtime.database.transaction() as session:
            written = session.execute(
                update(BulkJob)
                .where(BulkJob.id == self.job_id, BulkJob.lease_until == self.lease)
                .values(
                    done=self.done, skipped=self.skipped, total=self.total, updated_at=now, lease_until=lease, **extra
                )
            )
            if _rows(written) != 1:
                self.lost = self.stopping = True
                logger.warning("job %s: its lease was taken over by another runner; this one stops", self.job_id)
                return
            stop = session.scalar(select(BulkJob.stop_requested).where(BulkJob.id == self.job_id))
        self.lease = lease
        self.last, self.since = time.monotonic(), 0
        if stop:
            self.stopping = True
        if self.on_progress is not None:
            self.on_progress(store.view(store.get_job(self.runtime.database, self.job_id), now))

    def finish(self, status: str, report: str) -> bool:
        """Write how the run ended and let go of the lease; False when another runner holds it."""
        if self.lost:
            return False
        now = self.runtime.clock.now()
        with self.runtime.database.transaction() as session:
            written = session.execute(
                update(BulkJob)
                .where(BulkJob.id == self.job_id, BulkJob.lease_until == self.lease)
                .values(
                    status=status,
                    done=self.done,
                    skipped=self.skipped,
                    total=max(self.total, self.done + self.skipped) if status == store.DONE else self.total,
                    updated_at=now,
                    finished_at=now if status in (store.DONE, store.FAILED) else None,
                    lease_until=None,
                    stop_requested=False,
                    report=report[: audit.MAX_TEXT],
                )
            )
        if _rows(written) != 1:
            self.lost = True
            return False
        return True


def acquire(runtime: Runtime, job_id: int, lease_seconds: float = LEASE_SECONDS) -> tuple[BulkJob, datetime] | None:
    """Take job ``job_id``'s lease when it is runnable and no live runner holds it: the job as
    taken and the lease; None when it is not to be run by this caller."""
    db, now = runtime.database, runtime.clock.now()
    job = store.get_job(db, job_id)
    if job.status not in store.RUNNABLE:
        return None
    lease = now + timedelta(seconds=lease_seconds)
    started = now
    previous_start, previous_update = store.aware(job.started_at), store.aware(job.updated_at)
    if previous_start is not None and previous_update is not None and job.done + job.skipped:
        # Keep the time earlier runs were active: (done + skipped) / (updated_at - started_at) is
        # then the job's rate over the time it ran (store.view), whatever it sat stopped.
        started = now - max(timedelta(0), previous_update - previous_start)
    with db.transaction() as session:
        taken = session.execute(
            update(BulkJob)
            .where(
                BulkJob.id == job_id,
                BulkJob.status.in_(store.RUNNABLE),
                or_(BulkJob.lease_until.is_(None), BulkJob.lease_until < now),
            )
            .values(status=store.RUNNING, lease_until=lease, started_at=started, updated_at=now, report="")
        )
    if _rows(taken) != 1:
        return None
    return store.get_job(db, job_id), lease


def run_job(
    runtime: Runtime,
    job_id: int,
    *,
    lease_seconds: float = LEASE_SECONDS,
    interrupted: Callable[[], bool] = lambda: False,
    on_progress: Callable[[store.JobView], None] | None = None,
) -> Outcome:
    """Run job ``job_id`` to its end (done, stopped, failed) if this caller can take its lease.

    ``interrupted`` is asked before every item (Ctrl-C in the CLI): True stops the job cleanly,
    resumable. ``on_progress`` is called with the job at every progress write. A KeyboardInterrupt
    or a worker's shutdown raised inside stops the job too (resumable) and is raised again."""
    taken = acquire(runtime, job_id, lease_seconds)
    if taken is None:
        job = store.get_job(runtime.database, job_id)
        now = runtime.clock.now()
        if job.status in (store.RUNNING, store.STOPPING) and store.lease_alive(job, now):
            until = store.aware(job.lease_until)
            line = f"job {job_id} is {job.status}: another runner holds it (until {until:%H:%M:%S} UTC)"
        else:
            line = f"job {job_id} is {job.status}; nothing to run" + (
                f" (`backlane jobs resume {job_id}` continues it)" if job.status in store.RESUMABLE else ""
            )
        return Outcome(job_id, False, job.status, line)
    job, lease = taken
    kind = kind_of(job.kind)
    params = dict(job.params or {})
    target, _detail = kind.describe(params)
    progress = _Progress(runtime, job, lease, lease_seconds, interrupted, on_progress)
    earlier = job.done + job.skipped
    try:
        if job.stop_requested:
            progress.stopping = True
            line = "stopped before it started"
        else:
            progress.total = job.done + kind.count(runtime, params)
            progress.checkpoint()
            line = kind.run(runtime, params, progress)
    except Exception as exc:
        problem = explain(exc)
        if problem is None:
            logger.exception("job %s (%s) failed", job_id, job.kind)
            problem = Problem(
                f"unexpected error ({named_cause(exc, 300)}); the log has the traceback", EXIT_UNAVAILABLE
            )
        report = (
            f"failed after {progress.done - job.done:,} done in this run ({progress.done:,} in all): {problem.line}"
        )
        if progress.finish(store.FAILED, report):
            _audit_end(runtime, job, target, store.FAILED, "failed", report)
        return Outcome(job_id, True, store.FAILED, report, problem)
    except BaseException:  # KeyboardInterrupt, a worker's shutdown: stop where it is, resumable
        report = f"interrupted after {progress.done:,} done; `backlane jobs resume {job_id}` continues it"
        if progress.finish(store.STOPPED, report):
            _audit_end(runtime, job, target, store.STOPPED, "ok", report)
        raise
    if progress.lost:
        return Outcome(job_id, True, store.RUNNING, f"job {job_id}: another runner took it over")
    if earlier and not progress.stopping:
        line += f"; {progress.done:,} done, {progress.skipped:,} left in place over every run"
    if progress.stopping:
        status = store.STOPPED
        report = f"stopped: {line}; `backlane jobs resume {job_id}` continues it"
    else:
        status = store.DONE
        report = line
    if progress.finish(status, report):
        _audit_end(runtime, job, target, status, "ok", report)
    return Outcome(job_id, True, status, report)


def _audit_end(runtime: Runtime, job: BulkJob, target: str, status: str, outcome: str, report: str) -> None:
    audit.record(
        runtime.database,
        runtime.clock.now(),
        job.created_by,
        "job-end",
        target,
        detail=f"job {job.id} ({job.kind}) {status}",
        outcome=outcome,
        result=report,
        keep_days=runtime.settings.controls.audit_keep_days,
    )
