"""Bulk jobs: an operator's action over any number of items (requeue every dead letter, purge,
later cancel a selection) run as a job of its own, with progress, stoppable, resumable, and
reported when done, so no command or request has to hold it.

* :mod:`.kinds`: the registry of job kinds (name -> count what is left, run it);
* :mod:`.store`: the job's row (:class:`~backlane.db.models.BulkJob`): create, read, stop, resume;
* :mod:`.runner`: :func:`run_job`, the lease, the progress writes, how a run ends;
* :mod:`.actor`: the workers' ``backlane_bulk_job`` actor on the ``operations`` queue;
* :mod:`.operations`: start, stop, resume with the audit trail (the CLI and the dashboard);
* :mod:`.commands`: ``backlane jobs ...`` and the dead-letter commands' jobs;
* :mod:`.letters`: the kinds ``requeue`` and ``purge`` (dead letters);
* :mod:`.selection`: the kind ``cancel`` (a pipeline's items a search selects).
"""

from __future__ import annotations

from backlane.operations.jobs import letters as _letters  # noqa: F401  registers requeue and purge
from backlane.operations.jobs import selection as _selection  # noqa: F401  registers cancel
from backlane.operations.jobs.actor import ACTOR_NAME, OPERATIONS_QUEUE, declare_job_actor, job_actor
from backlane.operations.jobs.kinds import JobKind, Progress, kind_of, kinds, register_kind
from backlane.operations.jobs.runner import Outcome, run_job
from backlane.operations.jobs.store import JobView, create_job, get_job, list_jobs, view

__all__ = [
    "ACTOR_NAME",
    "OPERATIONS_QUEUE",
    "JobKind",
    "JobView",
    "Outcome",
    "Progress",
    "create_job",
    "declare_job_actor",
    "get_job",
    "job_actor",
    "kind_of",
    "kinds",
    "list_jobs",
    "register_kind",
    "run_job",
    "view",
]
