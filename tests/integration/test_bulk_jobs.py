"""Bulk jobs against the real broker and database (SQLite and PostgreSQL): a requeue job over
2,000 dead letters stopped at about half from outside and resumed requeues each exactly once;
a second runner of a leased job does nothing until the lease ends; purge; the CLI's
`jobs` commands and Ctrl-C; every start, stop, resume and end in the audit trail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pika
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from backlane.db.models import AuditEvent
from backlane.operations.jobs import create_job, get_job, operations, run_job, runner, store
from contracts.orders import ORDER_CREATED_QUEUE
from tests.integration.conftest import App
from tests.integration.test_dead_letter_admin import dead_letter, declare, depth
from tests.waiting import wait_until

XQ = f"{ORDER_CREATED_QUEUE}.XQ"


def fill_xq(app: App, count: int) -> list[str]:
    """``count`` dead letters in orders_inbox.XQ, each with its own message id (one confirmed batch)."""
    declare(app)
    ids = [uuid.uuid4().hex for _ in range(count)]
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for n, message_id in enumerate(ids):
            body = dead_letter(message_id, {"version": 1, "order_id": n + 1})
            props = pika.BasicProperties(delivery_mode=2, message_id=message_id)
            channel.basic_publish("", XQ, body, props, mandatory=True)
    finally:
        connection.close()
    wait_until(lambda: depth(app, XQ) == count, timeout=30, what=f"{count} dead letters")
    return ids


def drain_ids(app: App, queue: str) -> list[str]:
    """Every message id on ``queue`` (consumed), in order."""
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    ids = []
    try:
        channel = connection.channel()
        while True:
            method, _props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return ids
            ids.append(json.loads(body)["message_id"])
    finally:
        connection.close()


def audit_rows(app: App) -> list[tuple[str, str, str, str]]:
    with app.db.transaction() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [(r.actor, r.action, r.target, r.outcome) for r in rows]


def test_a_requeue_job_stopped_at_half_and_resumed_requeues_each_letter_exactly_once(app: App) -> None:
    ids = fill_xq(app, 2000)
    job_id = operations.start(app.runtime, "cli:tester", "requeue", {"queue": ORDER_CREATED_QUEUE}, detach=False)

    def stop_at_half(view: store.JobView) -> None:
        # From outside the runner: the operator's stop, written to the row while it runs.
        if view.done >= 500 and not view.stop_requested:
            operations.stop(app.runtime, "cli:operator", job_id)

    first = run_job(app.runtime, job_id, on_progress=stop_at_half)
    assert first.status == "stopped", first.line
    job = get_job(app.db, job_id)
    assert job.status == "stopped" and job.total == 2000 and 500 <= job.done < 2000, (job.done, job.total)
    assert depth(app, XQ) == 2000 - job.done, "letters not done stay in their .XQ, untouched"
    assert f"backlane jobs resume {job_id}" in job.report

    operations.resume(app.runtime, "cli:operator", job_id, detach=False)
    second = run_job(app.runtime, job_id)
    assert second.status == "done", second.line
    job = get_job(app.db, job_id)
    assert (job.status, job.done, job.skipped) == ("done", 2000, 0)
    assert job.total == 2000 and job.finished_at is not None and job.lease_until is None
    assert depth(app, XQ) == 0
    requeued = drain_ids(app, ORDER_CREATED_QUEUE)
    assert len(requeued) == 2000 and sorted(requeued) == sorted(ids), "every message id once on the queue"

    actions = [(actor, action) for actor, action, _target, _outcome in audit_rows(app)]
    assert actions == [
        ("cli:tester", "requeue"),
        ("cli:operator", "job-stop"),
        ("cli:tester", "job-end"),
        ("cli:operator", "job-resume"),
        ("cli:tester", "job-end"),
    ], actions


def test_a_second_runner_of_a_leased_job_does_nothing_until_the_lease_ends(app: App) -> None:
    fill_xq(app, 20)
    job_id = create_job(app.db, app.clock.now(), "requeue", {"queue": ORDER_CREATED_QUEUE}, "cli:tester")
    taken = runner.acquire(app.runtime, job_id)  # a runner that takes the job, then dies
    assert taken is not None

    second = run_job(app.runtime, job_id)
    assert not second.ran and "another runner holds it" in second.line
    assert depth(app, XQ) == 20 and get_job(app.db, job_id).done == 0
    shown = store.view(get_job(app.db, job_id), app.clock.now())
    assert shown.status == "running" and not shown.runner_lost

    app.clock.advance(seconds=runner.LEASE_SECONDS + 1)  # its lease ends: another takes over
    assert store.view(get_job(app.db, job_id), app.clock.now()).runner_lost
    third = run_job(app.runtime, job_id)
    assert third.ran and third.status == "done", third.line
    assert depth(app, XQ) == 0 and get_job(app.db, job_id).done == 20


def test_a_purge_job_empties_the_queue_and_reports_it(app: App) -> None:
    fill_xq(app, 30)
    job_id = operations.start(app.runtime, "dashboard:ops", "purge", {"queue": ORDER_CREATED_QUEUE}, detach=False)
    outcome = run_job(app.runtime, job_id)
    assert outcome.status == "done" and outcome.line == "purged 30 from orders_inbox.XQ"
    job = get_job(app.db, job_id)
    assert (job.done, job.total, job.report) == (30, 30, "purged 30 from orders_inbox.XQ")
    assert depth(app, XQ) == 0
    assert ("dashboard:ops", "purge", ORDER_CREATED_QUEUE, "ok") in audit_rows(app)


def test_a_job_whose_broker_is_away_fails_with_the_one_line_reason_and_resumes(app: App) -> None:
    fill_xq(app, 5)
    job_id = create_job(app.db, app.clock.now(), "requeue", {"queue": ORDER_CREATED_QUEUE}, "cli:tester")
    dead = "amqp://guest:guest@127.0.0.1:1/%2F"
    broker_settings = app.runtime.settings.broker.model_copy(update={"url": SecretStr(dead)})
    good = app.runtime.settings
    app.runtime.settings = good.model_copy(update={"broker": broker_settings})
    try:
        failed = run_job(app.runtime, job_id)
    finally:
        app.runtime.settings = good
    assert failed.status == "failed" and failed.problem is not None
    job = get_job(app.db, job_id)
    assert job.status == "failed" and "BACKLANE_BROKER__URL" in job.report and "\n" not in job.report
    operations.resume(app.runtime, "cli:tester", job_id, detach=False)
    assert run_job(app.runtime, job_id).status == "done" and depth(app, XQ) == 0


# -- the CLI --------------------------------------------------------------------------------


def cli_env(app: App) -> dict[str, str]:
    return {
        **os.environ,
        "BACKLANE_BROKER__URL": app.rabbitmq.amqp_url,
        "BACKLANE_BROKER__MANAGEMENT_URL": app.rabbitmq.management_url,
        "BACKLANE_DATABASE__URL": app.db.url,
        "PYTHONUNBUFFERED": "1",
    }


def cli(app: App, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backlane.cli", *args], env=cli_env(app), capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_ctrl_c_stops_the_cli_job_cleanly_and_jobs_resume_finishes_it(app: App) -> None:
    ids = fill_xq(app, 1000)
    argv = [sys.executable, "-m", "backlane.cli", "dead-letters", "requeue", "--all"]
    command = subprocess.Popen(
        [*argv, "--queue", ORDER_CREATED_QUEUE, "--rate", "400"],
        env=cli_env(app),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job = wait_until(lambda: next(iter(store.list_jobs(app.db, 1)), None), timeout=30, what="the command's job row")
        wait_until(lambda: get_job(app.db, job.id).done >= 100, timeout=30, what="100 letters requeued")
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=30)
    finally:
        if command.poll() is None:
            command.kill()
    assert command.returncode == 130, (out, err)
    assert f"backlane jobs resume {job.id}" in err, err
    stopped = get_job(app.db, job.id)
    assert stopped.status == "stopped" and 100 <= stopped.done < 1000, stopped.done
    assert depth(app, XQ) == 1000 - stopped.done

    shown = cli(app, "jobs", "show", str(job.id), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "stopped"
    listed = cli(app, "jobs", "list")
    assert listed.returncode == 0 and f"{job.id}" in listed.stdout and "stopped" in listed.stdout

    resumed = cli(app, "jobs", "resume", str(job.id))
    assert resumed.returncode == 0, resumed.stderr
    assert "requeued" in resumed.stdout and "1,000 done" in resumed.stdout, resumed.stdout
    assert get_job(app.db, job.id).done == 1000 and depth(app, XQ) == 0
    assert sorted(drain_ids(app, ORDER_CREATED_QUEUE)) == sorted(ids)

    again = cli(app, "jobs", "stop", str(job.id))
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "done already" in again.stderr
    missing = cli(app, "jobs", "show", "999999")
    assert missing.returncode == 2 and "no job 999999" in missing.stderr

    actor = next(a for a, action, _t, _o in audit_rows(app) if action == "requeue")
    assert actor.startswith("cli:")
    assert [(action, outcome) for _a, action, _t, outcome in audit_rows(app)] == [
        ("requeue", "ok"),
        ("job-end", "ok"),  # stopped by Ctrl-C
        ("job-resume", "ok"),
        ("job-end", "ok"),  # done
        ("job-stop", "refused"),  # a job done already
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_detach_hands_the_job_to_the_workers_queue_and_prints_its_id(app: App) -> None:
    from backlane.operations.jobs import OPERATIONS_QUEUE

    fill_xq(app, 3)
    app.broker.declare_queue(OPERATIONS_QUEUE, ensure=True)
    done = cli(app, "dead-letters", "purge", "--queue", ORDER_CREATED_QUEUE, "--yes", "--detach")
    assert done.returncode == 0, done.stderr
    job_id = int(done.stdout.strip())
    assert get_job(app.db, job_id).status == "queued" and depth(app, XQ) == 3
    assert depth(app, OPERATIONS_QUEUE) == 1, "the job's message waits for a worker"


def test_repeats_are_left_in_place_counted_and_never_stall_the_run(app: App) -> None:
    declare(app)
    connection = pika.BlockingConnection(pika.URLParameters(app.rabbitmq.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for n in range(1000):  # 1,000 copies of one message (more than the reader's window), then 10 others
            message_id = "the-same" if n < 990 else uuid.uuid4().hex
            props = pika.BasicProperties(delivery_mode=2, message_id=message_id)
            channel.basic_publish("", XQ, dead_letter(message_id, {"version": 1, "order_id": n}), props)
    finally:
        connection.close()
    wait_until(lambda: depth(app, XQ) == 1000, timeout=30, what="1,000 dead letters")
    job_id = create_job(app.db, app.clock.now(), "requeue", {"queue": ORDER_CREATED_QUEUE}, "cli:tester")
    started = time.monotonic()
    outcome = run_job(app.runtime, job_id)
    assert time.monotonic() - started < 10, "held letters must not stall the consumer"
    job = get_job(app.db, job_id)
    assert (job.status, job.done, job.skipped) == ("done", 11, 989), outcome.line
    assert "989 left in place whose message id this run had already requeued" in job.report
    assert depth(app, XQ) == 989 and len(drain_ids(app, ORDER_CREATED_QUEUE)) == 11


def test_the_workers_actor_takes_over_from_a_dead_runner_once_its_lease_ends(app: App) -> None:
    """A worker killed mid-job: RabbitMQ gives its message to another worker, whose actor finds the
    lease held, looks again once it ends (a delayed message), and then takes the job over; a lease
    renewed meanwhile (its runner alive) is left alone."""
    from backlane.operations.jobs import OPERATIONS_QUEUE
    from backlane.operations.jobs.actor import run_bulk_job

    fill_xq(app, 10)
    job_id = create_job(app.db, app.clock.now(), "requeue", {"queue": ORDER_CREATED_QUEUE}, "dashboard:ops")
    taken = runner.acquire(app.runtime, job_id)  # the runner that dies
    assert taken is not None
    _job, lease = taken
    app.broker.declare_queue(OPERATIONS_QUEUE, ensure=True)
    delayed = f"{OPERATIONS_QUEUE}.DQ"

    run_bulk_job(job_id)  # the redelivered message: the lease holds, so only a later look is sent
    assert depth(app, XQ) == 10 and get_job(app.db, job_id).done == 0
    wait_until(lambda: depth(app, delayed) == 1, timeout=10, what="the delayed look at the lease's end")

    app.clock.advance(seconds=runner.LEASE_SECONDS + 1)
    run_bulk_job(job_id, lease.isoformat())  # that look: the lease ended unrenewed, the job is taken over
    assert get_job(app.db, job_id).status == "done" and depth(app, XQ) == 0

    fill_xq(app, 5)
    alive = create_job(app.db, app.clock.now(), "requeue", {"queue": ORDER_CREATED_QUEUE}, "dashboard:ops")
    held = runner.acquire(app.runtime, alive)
    assert held is not None
    run_bulk_job(alive, "2000-01-01T00:00:00+00:00")  # a lease other than the one seen: its runner renewed it
    assert get_job(app.db, alive).status == "running" and depth(app, XQ) == 5
    assert depth(app, delayed) == 1, "no further look: a live runner finishes its job"
