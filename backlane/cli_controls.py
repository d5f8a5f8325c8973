"""The commands that change a running system: pause, resume, settings, cancel, reopen, audit.

Each is a thin call of :mod:`backlane.operations.controls` (what the dashboard calls too), as
the OS user who runs it (``cli:<user>`` in the audit trail).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from backlane.operations import audit
from backlane.operations.terminal import say

Command = Callable[..., argparse.ArgumentParser]


def add_control_commands(command: Command, app: Callable[[argparse.Namespace], Any]) -> None:
    """Add the commands to backlane's parser (``command`` is its sub-command factory, ``app``
    loads the application from the parsed arguments)."""

    def run(function: Callable[[Any, argparse.Namespace], str | int]) -> Callable[[argparse.Namespace], int]:
        def handler(args: argparse.Namespace) -> int:
            result = function(app(args), args)
            if isinstance(result, int):
                return result
            say(result)
            return 0

        return handler

    pause = command(
        "pause",
        "pause a pipeline, one of its parts or its inbox, on every process, without a restart",
        "Discover stops claiming and queued items wait (none is failed or lost) until `backlane resume`.\n"
        "Every worker and the clock see it within BACKLANE_CONTROLS__REFRESH_SECONDS; it survives restarts.\n\n"
        "  backlane pause PIPELINE --reason 'its API misbehaves'\n"
        "  backlane pause PIPELINE PART        (one of its parts, e.g. a section)\n"
        "  backlane pause PIPELINE --inbox     (what other services publish to it)",
    )
    _target_arguments(pause)
    pause.add_argument(
        "--reason", default="", type=audit.clean_text, help="why: shown with the pause and kept in the audit trail"
    )
    pause.set_defaults(func=run(_pause))

    resume = command("resume", "resume what `backlane pause` paused", "Items that waited run again within seconds.")
    _target_arguments(resume)
    resume.set_defaults(func=run(_resume))

    settings = command(
        "settings",
        "show, set or revert a pipeline's runtime settings (tick, max items, limits)",
        "A runtime setting overrides its environment variable on every process within seconds,\n"
        "validated as the variable is; `unset` reverts to the environment's value.\n\n"
        "  backlane settings show PIPELINE\n"
        "  backlane settings set PIPELINE max_items 100\n"
        "  backlane settings unset PIPELINE max_items",
    )
    settings.add_argument("action", choices=["show", "set", "unset"], help="what to do")
    settings.add_argument("pipeline", help="the pipeline's name")
    settings.add_argument("key", nargs="?", help="set/unset: the setting, dotted (max_items, limiters.NAME.calls)")
    settings.add_argument("value", nargs="?", help="set: the value (JSON: 5, 2.5, true, null; else text)")
    settings.add_argument("--json", action="store_true", help="show: print JSON")
    settings.set_defaults(func=run(_settings))

    cancel = command(
        "cancel",
        "cancel items (by id or search) so they are never worked; `reopen` undoes it",
        "A cancelled item is settled as 'cancelled by WHO: WHY'; its queued message does nothing when it\n"
        "arrives. Only items with work left that may still be cancelled are (e.g. not yet sent out).\n\n"
        "  backlane cancel PIPELINE 17 18 --reason 'duplicate'\n"
        "  backlane cancel PIPELINE --search KEY --reason 'customer cancelled'",
    )
    cancel.add_argument("pipeline", help="the pipeline's name")
    cancel.add_argument("ids", nargs="*", help="item ids")
    cancel.add_argument(
        "--search",
        default="",
        type=audit.clean_text,
        help="instead of ids: items whose searchable column is exactly this",
    )
    cancel.add_argument("--reason", default="", type=audit.clean_text, help="why (required): kept on each item")
    cancel.add_argument(
        "--job", action="store_true", help="with --search: any number of items, as a bulk job (progress, Ctrl-C stops)"
    )
    cancel.add_argument("--detach", action="store_true", help="with --job: hand it to the workers, print its id")
    cancel.set_defaults(func=run(_cancel))

    reopen = command("reopen", "make cancelled items due again", "Discover takes them at its next tick.")
    reopen.add_argument("pipeline", help="the pipeline's name")
    reopen.add_argument("ids", nargs="+", help="item ids")
    reopen.set_defaults(func=run(_reopen))

    trail = command(
        "audit",
        "who did what: every operator action, newest first",
        "Pauses, setting changes, cancels, triggers, requeues, purges and bulk jobs, from the CLI and\n"
        "the dashboard, with who, when and how it ended; kept BACKLANE_CONTROLS__AUDIT_KEEP_DAYS.",
    )
    trail.add_argument("--limit", type=int, default=50, metavar="N", help="at most N actions (default 50)")
    trail.add_argument(
        "--search", default="", type=audit.clean_text, help="only actions whose user, action or target contains this"
    )
    trail.add_argument("--json", action="store_true", help="print JSON")
    trail.set_defaults(func=run(_audit))


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="the pipeline's name (see `backlane pipelines`)")
    parser.add_argument("part", nargs="?", help="one of its parts (e.g. a section), not the whole pipeline")
    parser.add_argument("--inbox", action="store_true", help="its inbox (messages other services publish to it)")


def _pause(app: Any, args: argparse.Namespace) -> str:
    from backlane.operations import controls

    return controls.pause(
        app.registry, app.runtime, audit.cli_actor(), args.pipeline, args.part, inbox=args.inbox, reason=args.reason
    )


def _resume(app: Any, args: argparse.Namespace) -> str:
    from backlane.operations import controls

    return controls.resume(app.registry, app.runtime, audit.cli_actor(), args.pipeline, args.part, inbox=args.inbox)


def _settings(app: Any, args: argparse.Namespace) -> str | int:
    from backlane.errors import EXIT_USAGE, Problem
    from backlane.operations import controls
    from backlane.operations.terminal import json_text

    actor = audit.cli_actor()
    if args.action == "set":
        if args.key is None or args.value is None:
            raise Problem("usage: backlane settings set PIPELINE KEY VALUE", EXIT_USAGE)
        return controls.set_setting(app.registry, app.runtime, actor, args.pipeline, args.key, args.value)
    if args.action == "unset":
        if args.key is None or args.value is not None:
            raise Problem("usage: backlane settings unset PIPELINE KEY", EXIT_USAGE)
        return controls.unset_setting(app.registry, app.runtime, actor, args.pipeline, args.key)
    from backlane.operations.actions import require_schema

    require_schema(app.runtime)
    rows = controls.settings_of(app.registry, app.runtime, args.pipeline)
    if args.json:
        return json_text([row.__dict__ for row in rows], indent=2)
    width = max((len(row.key) for row in rows), default=10)
    lines = []
    for row in rows:
        where = row.source
        if row.source == "runtime":
            where = f"runtime, by {row.set_by} at {row.set_at:%Y-%m-%d %H:%M} UTC, over {row.underneath!r}"
        lines.append(f"{row.key:<{width}}  {row.value!r:<14} {where}  ({row.variable})")
    return "\n".join(lines)


def _cancel(app: Any, args: argparse.Namespace) -> str | int:
    from backlane.operations import controls

    if args.job:
        from backlane.operations.jobs.commands import run_here

        job_id = controls.cancel_job(
            app.registry,
            app.runtime,
            audit.cli_actor(),
            args.pipeline,
            search=args.search,
            reason=args.reason,
            detach=args.detach,
        )
        if args.detach:
            return f"job {job_id}: handed to the workers; follow it with `backlane jobs show {job_id}`"
        return run_here(app.runtime, job_id)

    return controls.cancel(
        app.registry,
        app.runtime,
        audit.cli_actor(),
        args.pipeline,
        ids=args.ids,
        search=args.search,
        reason=args.reason,
    )


def _reopen(app: Any, args: argparse.Namespace) -> str:
    from backlane.operations import controls

    return controls.reopen(app.registry, app.runtime, audit.cli_actor(), args.pipeline, args.ids)


def _audit(app: Any, args: argparse.Namespace) -> str:
    from backlane.errors import EXIT_USAGE, Problem
    from backlane.operations.actions import require_schema
    from backlane.operations.terminal import json_text

    if args.limit < 1:
        raise Problem("--limit must be 1 or more", EXIT_USAGE)
    require_schema(app.runtime)
    page = audit.events(app.runtime.database, limit=args.limit, search=args.search)
    if args.json:
        keys = ("at", "actor", "action", "target", "detail", "outcome", "result")
        return json_text([{key: getattr(event, key) for key in keys} for event in page.events], indent=2)
    if not page.events:
        return "no operator action recorded" + (f" matching {args.search!r}" if args.search else "")
    lines = [
        f"{event.at:%Y-%m-%d %H:%M:%S}  {event.actor:<22} {event.action:<8} {event.target:<28} {event.outcome:<8} "
        f"{event.result or event.detail}"
        for event in page.events
    ]
    if page.total > len(page.events):
        lines.append(f"({page.total - len(page.events):,} older; --limit N or --search TEXT)")
    return "\n".join(lines)
