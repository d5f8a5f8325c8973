"""What an operator does with bulk jobs, the same from the CLI and the dashboard: start one,
stop it, resume it, each written to the audit trail with who asked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from backlane.db.models import BulkJob
from backlane.operations import audit
from backlane.operations.jobs import store
from backlane.operations.jobs.actor import job_actor
from backlane.operations.jobs.kinds import kind_of

if TYPE_CHECKING:
    from backlane.core.runtime import Runtime


def _keep(runtime: Runtime) -> float:
    return runtime.settings.controls.audit_keep_days


def start(runtime: Runtime, actor: str, kind: str, params: Mapping[str, Any], *, detach: bool) -> int:
    """Create a job of ``kind`` over ``params``; with ``detach``, hand it to the workers. Its id."""
    target, detail = kind_of(kind).describe(params)
    db, now = runtime.database, runtime.clock.now()
    with audit.recorded(db, now, actor, kind, target, detail=detail, keep_days=_keep(runtime)) as answer:
        job_id = store.create_job(db, now, kind, params, actor)
        if detach:
            send(runtime, job_id)
        answer.append(f"job {job_id}, {detail}" + (": handed to the workers" if detach else ": run by the command"))
    return job_id


def send(runtime: Runtime, job_id: int) -> None:
    """Hand job ``job_id`` to the workers (the ``operations`` queue)."""
    job_actor(runtime.broker).send(job_id)


def stop(runtime: Runtime, actor: str, job_id: int) -> str:
    db, now = runtime.database, runtime.clock.now()
    with audit.recorded(db, now, actor, "job-stop", f"job {job_id}", keep_days=_keep(runtime)) as answer:
        line = store.request_stop(db, now, job_id)
        answer.append(line)
    return line


def resume(runtime: Runtime, actor: str, job_id: int, *, detach: bool) -> BulkJob:
    """Job ``job_id`` queued again (what it did is kept); with ``detach``, handed to the workers."""
    db, now = runtime.database, runtime.clock.now()
    with audit.recorded(db, now, actor, "job-resume", f"job {job_id}", keep_days=_keep(runtime)) as answer:
        job = store.reopen(db, now, job_id)
        if detach:
            send(runtime, job_id)
        answer.append(f"job {job_id} resumed" + (": handed to the workers" if detach else ": run by the command"))
    return job
