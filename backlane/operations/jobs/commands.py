"""``backlane jobs list|show|stop|resume`` and the dead-letter commands' jobs
(``backlane dead-letters requeue --all``, ``purge``): the handlers behind backlane/cli.py.

A job started from a command runs in the command's own process by default, its progress on
stderr about once a second and its report on stdout; Ctrl-C stops it cleanly between two items
(resumable: exit 130 and the line naming ``backlane jobs resume ID``); a second Ctrl-C stops at
once (still resumable: letters not acked stay in their .XQ). ``--detach`` hands the job to the
workers and prints its id at once.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from backlane.operations import audit
from backlane.operations.jobs import operations, store
from backlane.operations.jobs.runner import run_job
from backlane.operations.terminal import escape_controls, json_text, say
from backlane.problems import EXIT_INTERRUPTED, EXIT_USAGE, Problem

if TYPE_CHECKING:
    from backlane.core.runtime import Runtime

#: Progress lines on stderr at most this often, seconds.
PROGRESS_EVERY = 1.0


def jobs_command(args: argparse.Namespace, runtime: Runtime) -> int:
    """``backlane jobs ACTION [ID]``."""
    from backlane.operations.actions import require_schema

    if args.action != "list" and args.id is None:
        raise Problem(f"say which job: `backlane jobs {args.action} ID` (`backlane jobs list` shows them)", EXIT_USAGE)
    require_schema(runtime)
    db, now = runtime.database, runtime.clock.now()
    if args.action == "list":
        views = [store.view(job, now) for job in store.list_jobs(db, args.limit)]
        if args.json:
            say(json_text([v.as_json() for v in views], indent=2))
            return 0
        say(f"{'ID':>5} {'KIND':<8} {'STATUS':<9} {'TARGET':<18} {'CREATED':<20} {'BY':<18} PROGRESS")
        for v in views:
            say(
                escape_controls(
                    f"{v.id:>5} {v.kind:<8} {shown_status(v):<9} {_target(v.params):<18} "
                    f"{v.created_at:%Y-%m-%d %H:%M:%S} {v.created_by:<18} {v.progress_line}"
                )
            )
        return 0
    if args.action == "show":
        shown = store.view(store.get_job(db, args.id), now)
        if args.json:
            say(json_text(shown.as_json(), indent=2))
            return 0
        say(escape_controls(describe(shown)))
        return 0
    if args.action == "stop":
        say(operations.stop(runtime, audit.cli_actor(), args.id))
        return 0
    operations.resume(runtime, audit.cli_actor(), args.id, detach=args.detach)
    if args.detach:
        say(f"job {args.id}: handed to the workers; follow it with `backlane jobs show {args.id}`")
        return 0
    return run_here(runtime, args.id)


def shown_status(v: store.JobView) -> str:
    return f"{v.status}?" if v.runner_lost else v.status


def _target(params: Mapping[str, Any]) -> str:
    return str(params.get("queue") or "every queue")


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment is not None else "-"


def describe(v: store.JobView) -> str:
    """A job as ``backlane jobs show`` prints it."""
    lines = [
        f"job {v.id}: {v.kind} {_target(v.params)}"
        + (f" (at most {v.params['rate']}/s)" if v.params.get("rate") else ""),
        f"  status:   {v.status}" + (" (asked to stop)" if v.stop_requested and v.status != store.STOPPED else ""),
        f"  progress: {v.progress_line}",
        f"  created:  {_when(v.created_at)} by {v.created_by}",
        f"  updated:  {_when(v.updated_at)}",
    ]
    if v.finished_at is not None:
        lines.append(f"  finished: {_when(v.finished_at)}")
    if v.runner_lost:
        lines.append(f"  its runner's lease has ended: it died; `backlane jobs resume {v.id}` takes it up")
    if v.report:
        lines.append(f"  report:   {v.report}")
    return "\n".join(lines)


def dead_letters_job(runtime: Runtime, kind: str, params: Mapping[str, Any], *, detach: bool) -> int:
    """``dead-letters requeue --all`` and ``purge``: a job, run here (default) or by the workers."""
    from backlane.operations.actions import require_schema

    require_schema(runtime)
    job_id = operations.start(runtime, audit.cli_actor(), kind, params, detach=detach)
    if detach:
        say(job_id)
        say(f"job {job_id}: handed to the workers; follow it with `backlane jobs show {job_id}`", file=sys.stderr)
        return 0
    return run_here(runtime, job_id)


def run_here(runtime: Runtime, job_id: int) -> int:
    """Run job ``job_id`` in this process: progress on stderr, the report on stdout; Ctrl-C
    stops it cleanly (exit 130, resumable)."""
    interrupted = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():

        def on_sigint(_signum: int, _frame: Any) -> None:
            if interrupted.is_set():  # a second Ctrl-C: at once (the runner still marks it stopped)
                raise KeyboardInterrupt
            interrupted.set()

        previous = signal.signal(signal.SIGINT, on_sigint)
    last = [time.monotonic()]

    def on_progress(v: store.JobView) -> None:
        if time.monotonic() - last[0] >= PROGRESS_EVERY:
            last[0] = time.monotonic()
            say(f"job {job_id}: {v.kind} {v.progress_line}", file=sys.stderr, flush=True)

    try:
        outcome = run_job(runtime, job_id, interrupted=interrupted.is_set, on_progress=on_progress)
    except KeyboardInterrupt:
        say(f"job {job_id} interrupted; `backlane jobs resume {job_id}` continues it", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if outcome.problem is not None:
        raise Problem(
            f"{outcome.problem.line} (job {job_id} failed; `backlane jobs resume {job_id}` tries again)",
            outcome.problem.status,
        )
    if not outcome.ran:
        raise Problem(outcome.line, EXIT_USAGE)
    if outcome.status == store.STOPPED:
        say(f"job {job_id} {outcome.line}", file=sys.stderr)
        return EXIT_INTERRUPTED if interrupted.is_set() else 0
    say(outcome.line)
    return 0
