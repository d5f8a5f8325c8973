"""The workers' side of bulk jobs: one Dramatiq actor, ``backlane_bulk_job(job_id)``, on the
framework's own queue :data:`OPERATIONS_QUEUE`, declared with every other actor (so
``backlane declare-queues`` declares the queue and every worker consumes it).

The message says "run job N"; the job's row says the rest. The actor has no time limit a long
job could reach and is never retried (``max_retries=0``): a second delivery of the same message
(RabbitMQ redelivers what a killed worker held) finds the lease of the first runner and does
nothing, except look once more when that lease ends, to take over from a runner that died.
A worker shutting down stops its job between two items and queues it again for another worker.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.middleware.shutdown import Shutdown

from backlane.core.runtime import get_runtime
from backlane.operations.jobs import store
from backlane.operations.jobs.runner import run_job

logger = logging.getLogger("backlane.jobs")

#: The framework's own queue for its bulk jobs: a job never waits behind a pipeline's backlog.
OPERATIONS_QUEUE = "operations"
ACTOR_NAME = "backlane_bulk_job"
#: Dramatiq's time limit for one job, ms: 30 days, none a real job reaches (TimeLimit's default
#: of 10 minutes would interrupt a large requeue).
JOB_TIME_LIMIT_MS = 30 * 24 * 3600 * 1000
#: A look at a job whose lease another runner held comes this long after that lease's end, seconds.
TAKEOVER_MARGIN = 1.0


def run_bulk_job(job_id: int, seen_lease: str | None = None) -> None:
    """Body of the actor: run job ``job_id``; when another runner holds it, look again once its
    lease ends (``seen_lease``: the lease seen last time; renewed since, its holder is alive)."""
    runtime = get_runtime()
    try:
        outcome = run_job(runtime, job_id)
    except Shutdown:
        # The worker is stopping: run_job stopped the job between two items; queue it again.
        try:
            store.reopen(runtime.database, runtime.clock.now(), job_id)
            job_actor(runtime.broker).send(job_id)
            logger.info("job %s: worker shutting down; queued again for another worker", job_id)
        except Exception:
            logger.warning("job %s: stopped by the worker's shutdown; `backlane jobs resume %s`", job_id, job_id)
        raise
    if outcome.problem is not None:
        logger.warning("job %s failed: %s", job_id, outcome.line)
        return
    if outcome.ran or outcome.status not in (store.RUNNING, store.STOPPING):
        logger.info("job %s: %s", job_id, outcome.line)
        return
    job = store.get_job(runtime.database, job_id)
    lease = store.aware(job.lease_until)
    if lease is None:
        return
    if seen_lease is not None and seen_lease != lease.isoformat():
        logger.info("job %s: its runner is alive (it renewed its lease); nothing to take over", job_id)
        return
    wait = max(0.0, (lease - runtime.clock.now()).total_seconds()) + TAKEOVER_MARGIN
    job_actor(runtime.broker).send_with_options(args=(job_id, lease.isoformat()), delay=int(wait * 1000))


def declare_job_actor(broker: Any) -> dramatiq.Actor:  # type: ignore[type-arg]
    """The bulk-job actor on ``broker`` (declared once; again returns the one there is)."""
    if ACTOR_NAME in broker.actors:
        return broker.actors[ACTOR_NAME]

    def backlane_bulk_job(job_id: int, seen_lease: str | None = None) -> None:
        run_bulk_job(job_id, seen_lease)

    return dramatiq.actor(
        actor_name=ACTOR_NAME,
        queue_name=OPERATIONS_QUEUE,
        broker=broker,
        max_retries=0,
        time_limit=JOB_TIME_LIMIT_MS,
        notify_shutdown=True,
    )(backlane_bulk_job)


def job_actor(broker: Any) -> dramatiq.Actor:  # type: ignore[type-arg]
    return declare_job_actor(broker)
