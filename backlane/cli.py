"""The backlane command: migrate, declare queues, list and trigger pipelines, status, dead letters, schemas.

Each subcommand is a thin shell over a module that does the work, so the same
operations are importable from tests and scripts. Whatever goes wrong ends in
one line on stderr naming the cause and the fix (:mod:`backlane.problems`), with
exit status 2 for a mistake in the command or the settings, 1 for a dependency
that is unreachable or not ready, 130 for Ctrl-C; ``--debug`` adds the traceback.
Commands give RabbitMQ, its management API and the database
``BACKLANE_BROKER__COMMAND_TIMEOUT`` seconds (3) to answer.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _quiet_exit(_signum: int, _frame: FrameType | None) -> None:
    sys.exit(130)


# Run as the command: Ctrl-C while the libraries below load ends it quietly too; main() gives
# the interrupt back to Python, which raises KeyboardInterrupt, answered with 130, no traceback.
if __name__ == "__main__" or os.path.basename(sys.argv[0] if sys.argv else "") == "backlane":
    signal.signal(signal.SIGINT, _quiet_exit)

import argparse  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from backlane.operations.terminal import escape_controls, json_text, say  # noqa: E402
from backlane.problems import EXIT_INTERRUPTED, EXIT_UNAVAILABLE, EXIT_USAGE, Problem  # noqa: E402

if TYPE_CHECKING:
    from backlane.app import App
    from backlane.core.registry import Registry
    from backlane.operations.dead_letters import Listing

PURPOSES = ("ingestion", "internal", "export")  # backlane.core.pipeline.Purpose, without importing it


def _app(args: argparse.Namespace) -> App:
    from backlane.app import load_app

    return load_app(args.app)


def add_pipeline_commands(command: Callable[..., argparse.ArgumentParser], registry: Registry) -> None:
    """``backlane <pipeline> <command>`` for every registered pipeline that declares commands."""
    for registered in registry:
        pipeline = registered.pipeline
        if not pipeline.commands:
            continue
        about = pipeline.commands_help or pipeline.description
        group = command(pipeline.name, f"the {pipeline.name} pipeline's own commands", about)
        actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
        for declared in pipeline.commands:
            parser = actions.add_parser(declared.name, help=declared.help, description=declared.help)
            if declared.arguments is not None:
                declared.arguments(parser)
            parser.set_defaults(func=_pipeline_command(registered.name, declared.name))


def _pipeline_command(pipeline: str, name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from backlane.operations.actions import require_schema

        registered = _app(args).registry.get(pipeline)
        ctx = registered.context()
        require_schema(ctx.runtime)
        declared = next(c for c in registered.pipeline.commands if c.name == name)
        return int(declared.run(ctx, args) or 0)

    return run


def _command_word(argv: Sequence[str]) -> tuple[str | None, str | None]:
    """(the command named on the line, the --app value) before parsing: a word that is not one
    of backlane's own commands may be a pipeline's, known only once the application is loaded."""
    app: str | None = None
    words = iter(argv)
    for word in words:
        if word == "--app":
            app = next(words, None)
        elif word.startswith("--app="):
            app = word.split("=", 1)[1]
        elif not word.startswith("-"):
            return word, app
    return None, app


def _pipelines(args: argparse.Namespace) -> int:
    from backlane.core.pipeline import Purpose

    purpose = Purpose(args.purpose) if args.purpose else None
    rows = []
    for reg in _app(args).registry.by_purpose(purpose):
        config = reg.context().config
        rows.append(
            {
                "name": reg.name,
                "purpose": reg.pipeline.purpose.value,
                "queue": reg.pipeline.queue_name,
                "schedule": config.tick,
                "max_items": config.max_items,
                # A pipeline whose items run a bounded number at once declares max_concurrent.
                "max_concurrent": getattr(config, "max_concurrent", None),
                "enabled": config.enabled,
                "description": reg.pipeline.description,
            }
        )
    if args.json:
        say(json_text(rows, indent=2))
        return 0
    say(f"{'NAME':<16} {'PURPOSE':<10} {'QUEUE':<16} {'SCHEDULE':<13} {'LIMIT':<11} ON")
    for row in rows:
        limit = f"{row['max_concurrent']} at once" if row["max_concurrent"] else f"{row['max_items']}/tick"
        say(
            f"{row['name']:<16} {row['purpose']:<10} {row['queue']:<16} {row['schedule']:<13} "
            f"{limit:<11} {'yes' if row['enabled'] else 'no'}"
        )
    return 0


def _trigger(args: argparse.Namespace) -> int:
    from backlane.operations.audit import cli_actor
    from backlane.operations.controls import audited_trigger

    app = _app(args)
    say(audited_trigger(app.registry, app.runtime, cli_actor(), args.pipeline, args.target))
    return 0


def _status(args: argparse.Namespace) -> int:
    import shutil

    from backlane.operations.status import collect_status, render

    if args.watch is not None and args.watch <= 0:
        raise Problem("--watch takes a number of seconds above 0, e.g. --watch 2", EXIT_USAGE)
    app = _app(args)
    limit = None if args.exact else app.runtime.settings.dashboard.exact_count_limit
    while True:
        status = collect_status(app.registry, app.runtime, count_limit=limit)
        if args.json:
            say(json_text(status, indent=2), flush=True)
        elif args.watch:
            size = shutil.get_terminal_size((80, 24))
            text = render(status, width=size.columns, height=size.lines - 1, compact=True)
            footer = f"every {args.watch:g}s; Ctrl-C to stop"
            sys.stdout.write("\033[H\033[2J")  # backlane's own: clear the screen, then the escaped text
            say(text + "\n" + footer[: size.columns], end="", flush=True)
        else:
            say(render(status), flush=True)
        if args.watch is None:
            return EXIT_UNAVAILABLE if status["errors"] else 0
        time.sleep(args.watch)


def _dead_letters(args: argparse.Namespace) -> int:
    from backlane.operations import dead_letters as admin

    if args.limit < 0:
        raise Problem("--limit must be 0 or more", EXIT_USAGE)
    if args.action == "requeue" and bool(args.all) == bool(args.message_id):
        raise Problem("say which to requeue: --message-id ID (one) or --all", EXIT_USAGE)
    if args.action == "purge" and not args.yes and not sys.stdin.isatty():
        raise Problem(
            "purge asks for confirmation and there is no terminal to ask on: add --yes to purge without asking",
            EXIT_USAGE,
        )
    runtime = _app(args).runtime
    url = runtime.settings.broker.url.get_secret_value()
    timeout = runtime.settings.broker.command_timeout
    heartbeat = runtime.settings.broker.heartbeat_seconds
    missing_ok = not args.queue  # every queue: one never declared has no dead letters; a named one must exist
    queues = admin.select_queues(runtime.broker, args.queue)
    if args.action == "list":
        listings = admin.list_dead_letters(
            url, queues, args.limit, missing_ok=missing_ok, timeout=timeout, heartbeat=heartbeat
        )
        return _list_dead_letters(args, listings)
    if args.action == "requeue" and args.all:  # any number of letters: a job (backlane/operations/jobs)
        from backlane.operations.jobs.commands import dead_letters_job

        params = {"queue": queues[0] if args.queue else None, "rate": args.rate}
        return dead_letters_job(runtime, "requeue", params, detach=args.detach)
    if args.action == "requeue":
        report = admin.requeue(
            runtime.broker,
            url,
            queues,
            lambda d: args.all or d.message_id == args.message_id,
            first_only=bool(args.message_id),
            missing_ok=missing_ok,
            timeout=timeout,
        )
        say(report.summary(args.message_id))
        return 0 if report.requeued or args.all else 1
    if not args.yes:
        try:
            answer = input(
                escape_controls(f"purge every dead letter of {', '.join(queues)}? type 'purge' to confirm: ")
            )
        except EOFError:
            say()
            answer = ""
        if answer.strip() != "purge":
            say("nothing purged")
            return 1
    from backlane.operations.jobs.commands import dead_letters_job

    return dead_letters_job(runtime, "purge", {"queue": queues[0] if args.queue else None}, detach=args.detach)


def _jobs(args: argparse.Namespace) -> int:
    from backlane.operations.jobs.commands import jobs_command

    return jobs_command(args, _app(args).runtime)


def _list_dead_letters(args: argparse.Namespace, listings: list[Listing]) -> int:
    from backlane.operations import dead_letters as admin

    letters = [letter for listing in listings for letter in listing.letters]
    summaries = [
        f"showing {len(listing.letters):,} of {listing.total:,} dead letter{'' if listing.total == 1 else 's'}"
        f" in {listing.xq}"
        for listing in listings
        if listing.total or len(listings) == 1
    ]
    shown, total = len(letters), sum(listing.total for listing in listings)
    if len(summaries) != 1:
        summaries.append(f"showing {shown:,} of {total:,} dead letters in {len(listings)} queue(s)")
    if shown < total:
        summaries[-1] += f" (--limit {args.limit} reached; raise it to see more)"
    if args.json:
        say(json_text([admin.display_row(letter) for letter in letters], indent=2, default=str))
        for line in summaries:
            say(line, file=sys.stderr)  # stdout stays one JSON document
        return 0
    for letter in letters:
        row = admin.display_row(letter)
        item = row["item"] if isinstance(row["item"], str) else json_text(row["item"])
        field = {key: escape_controls(value) for key, value in row.items()}  # one line per letter
        say(
            f"{field['failed_at']:<26} {field['queue']:<16} {field['actor']:<18} id={field['message_id']}"
            f" item={escape_controls(item)} [{field['kind']}] {field['reason']}"
        )
    for line in summaries:
        say(line)
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from backlane.operations.dashboard.server import missing_extra, serve
    from backlane.settings import get_settings

    problem = missing_extra()
    if problem is not None:
        raise problem
    # The settings are checked before the application loads: a dashboard that must not
    # start says so at once.
    settings = get_settings().dashboard
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    from backlane.operations.dashboard.security import bind_problem

    refused = bind_problem(settings)
    if refused is not None:
        raise refused
    return serve(_app(args), settings)


def _declare_queues(args: argparse.Namespace) -> int:
    from backlane.messaging.events import declare_pipeline_events
    from backlane.messaging.queues import declare_all

    app = _app(args)
    for name in declare_all(app.runtime.broker):
        say(f"declared {name} (+ {name}.DQ, {name}.XQ)")
    for event in declare_pipeline_events(app.registry, app.runtime):
        say(f"declared exchange {event.exchange} (+ {event.recent_queue}, the latest {event.recent_max_length})")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from pydantic import SecretStr

    from backlane.db.migrate import upgrade
    from backlane.problems import database_problem
    from backlane.settings import get_settings, validate_database_url

    settings = get_settings()
    url = args.url or settings.database.url.get_secret_value()
    if args.url:
        try:
            validate_database_url(SecretStr(args.url))
        except ValueError as exc:
            raise Problem(f"--url: {exc}", EXIT_USAGE) from None
    timeout = min(settings.database.connect_timeout, max(1, round(settings.broker.command_timeout)))
    _app(args)  # its pipelines' own migrations folders are found through their registration
    try:
        upgrade(url, connect_timeout=timeout)
    except Exception as exc:
        problem = database_problem(exc, url)
        if problem is None:
            raise
        raise problem from None
    say("database is at the latest revision")
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from backlane.operations.schemas import write_schemas

    try:
        paths = write_schemas(args.out)
    except OSError as exc:
        raise Problem(f"cannot write the schemas to {args.out}: {exc.strerror or exc}", EXIT_USAGE) from None
    for path in paths:
        say(path)
    return 0


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (paragraphs and examples), defaults shown where they help."""


def build_parser(registry: Registry | None = None, names: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line; with ``registry``, each registered pipeline's own commands too
    (``backlane exports add``), under the pipeline's name. ``names`` collects the commands'."""
    parser = argparse.ArgumentParser(
        prog="backlane",
        description=(
            "Operate backlane: apply migrations, declare queues, list and trigger pipelines,\n"
            "watch their status and handle dead letters.\n\n"
            "Settings come from BACKLANE_* environment variables (backlane/settings.py).\n"
            "A mistake ends in one line naming the fix: exit status 2 for a mistake in the\n"
            "command or the settings, 1 when RabbitMQ or the database is unreachable or not\n"
            "ready, 130 on Ctrl-C."
        ),
        epilog="Run `backlane COMMAND --help` for the options of each command.",
        formatter_class=_Formatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens, pika's messages included")
    parser.add_argument("--debug", action="store_true", help="print the traceback behind an error line")
    parser.add_argument(
        "--app",
        metavar="MODULES",
        help="module(s) whose import registers the pipelines, as given to dramatiq "
        "(default: BACKLANE_APP, else 'scheduler')",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str = "") -> argparse.ArgumentParser:
        if names is not None:
            names.append(name)
        return sub.add_parser(name, help=summary, description=description or summary, formatter_class=_Formatter)

    migrate = command(
        "migrate",
        "apply the database migrations (creates the SQLite file if needed)",
        "Bring the database (BACKLANE_DATABASE__URL) to the latest schema. Run it once per\n"
        "deploy, before the workers and the clock start: they refuse to start without it.",
    )
    migrate.add_argument("--url", help="database URL to migrate instead of BACKLANE_DATABASE__URL")
    migrate.set_defaults(func=_migrate)

    declare = command(
        "declare-queues",
        "declare every queue on RabbitMQ (run once per deploy)",
        "Declare each pipeline's queue with its delay (.DQ) and dead-letter (.XQ) queues, so\n"
        "other services can publish (OrderCreated) before any worker has started.",
    )
    declare.set_defaults(func=_declare_queues)

    if registry is not None:
        add_pipeline_commands(command, registry)

    pipelines = command("pipelines", "list the registered pipelines")
    pipelines.add_argument("--purpose", choices=PURPOSES, help="only the pipelines of this purpose")
    pipelines.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pipelines.set_defaults(func=_pipelines)

    trigger = command(
        "trigger",
        "run a pipeline's discover now, or its own trigger with a TARGET",
        "Queue the pipeline's discover at once instead of waiting for the clock's next tick.\n"
        "With TARGET, hand it to the pipeline's own trigger (a pipeline of sections refreshes\n"
        "that section now, whatever its interval); `backlane status` names the targets.",
    )
    trigger.add_argument("pipeline", help="the pipeline's name (see `backlane pipelines`)")
    trigger.add_argument("target", nargs="?", help="handed to the pipeline's own trigger")
    trigger.set_defaults(func=_trigger)

    from backlane.cli_controls import add_control_commands

    add_control_commands(command, _app)

    status = command(
        "status",
        "pipelines, queue depths, breakers and freshness on one screen",
        "Every pipeline: items due, in flight, done and failed (database), its queue's depths\n"
        "(RabbitMQ management API) and its health. A value that cannot be read shows as '?'\n"
        "(null in JSON), never as 0. On PostgreSQL a count past BACKLANE_DASHBOARD__EXACT_COUNT_LIMIT\n"
        "(100,000) is the planner's estimate, marked ≈ (named under items.estimated in JSON),\n"
        "so status costs the same over ten million rows as over a thousand; --exact counts every\n"
        "row. Exit status 1 when RabbitMQ, its management API or the database cannot be read,\n"
        "or the database is not migrated.",
    )
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.add_argument(
        "--exact", action="store_true", help="count every row, however many (a scan of each large state)"
    )
    status.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=2.0,
        default=None,
        metavar="SECONDS",
        help="refresh in place every SECONDS (default 2) until Ctrl-C",
    )
    status.set_defaults(func=_status)

    dead = command(
        "dead-letters",
        "list, requeue or purge dead letters",
        "Dead letters are in each queue's .XQ with the reason they failed.\n\n"
        "  backlane dead-letters list [--queue Q] [--limit N] [--json]\n"
        "  backlane dead-letters requeue --message-id ID [--queue Q]\n"
        "  backlane dead-letters requeue --all [--queue Q] [--rate N] [--detach]\n"
        "  backlane dead-letters purge [--queue Q] [--yes] [--detach]\n\n"
        "requeue --all and purge run as a job (progress on stderr, Ctrl-C stops it, resumable;\n"
        "--detach hands it to the workers): see `backlane jobs`.\n"
        "Fix the cause before requeueing: a requeued message runs again with fresh retries.",
    )
    dead.add_argument("action", choices=["list", "requeue", "purge"], help="what to do")
    dead.add_argument("--queue", help="only this queue's dead letters, a pipeline's name (default: every queue)")
    dead.add_argument("--message-id", metavar="ID", help="requeue: the message to put back (one copy of it)")
    dead.add_argument("--all", action="store_true", help="requeue: every dead letter there is when it starts")
    dead.add_argument("--yes", action="store_true", help="purge: do not ask for confirmation")
    dead.add_argument(
        "--limit", type=int, default=100, metavar="N", help="list: show at most N dead letters (default 100)"
    )
    dead.add_argument("--json", action="store_true", help="list: print JSON for scripts")
    dead.add_argument("--detach", action="store_true", help="requeue --all, purge: hand the job to the workers")
    dead.add_argument("--rate", type=float, metavar="N", help="requeue --all: at most N letters a second")
    dead.set_defaults(func=_dead_letters)

    jobs = command(
        "jobs",
        "list, follow, stop and resume bulk jobs (requeue --all, purge)",
        "Bulk actions run as jobs with progress, stoppable and resumable (docs/operating.md).\n\n"
        "  backlane jobs list [--json]\n"
        "  backlane jobs show ID [--json]\n"
        "  backlane jobs stop ID\n"
        "  backlane jobs resume ID [--detach]",
    )
    jobs.add_argument("action", choices=["list", "show", "stop", "resume"], help="what to do")
    jobs.add_argument("id", nargs="?", type=int, help="show, stop, resume: the job's id (see `backlane jobs list`)")
    jobs.add_argument("--json", action="store_true", help="list, show: print JSON for scripts")
    jobs.add_argument("--limit", type=int, default=50, metavar="N", help="list: the newest N jobs (default 50)")
    jobs.add_argument("--detach", action="store_true", help="resume: hand it to the workers, not run it here")
    jobs.set_defaults(func=_jobs)

    dashboard = command(
        "dashboard",
        "serve the operators' web dashboard (loopback only unless a password is set)",
        "Serve the dashboard: every pipeline's items and failures, queues, dead letters (requeue,\n"
        "purge), each pipeline's health rows (trigger now), breakers and health. Settings:\n"
        "BACKLANE_DASHBOARD__HOST (127.0.0.1), __PORT (8090), __USER / __PASSWORD (HTTP Basic;\n"
        "required on any address but loopback), __READ_ONLY. Ctrl-C stops it.",
    )
    dashboard.add_argument("--host", help="address to listen on (default BACKLANE_DASHBOARD__HOST)")
    dashboard.add_argument("--port", type=_port, help="port to listen on (default BACKLANE_DASHBOARD__PORT)")
    dashboard.set_defaults(func=_dashboard)

    schemas = command(
        "schemas",
        "write the JSON Schema of every message contract",
        "Write one <Contract>.schema.json per message contract, for services in other languages.",
    )
    schemas.add_argument(
        "--out", default="contracts/schemas", metavar="DIR", help="directory to write to (default contracts/schemas)"
    )
    schemas.set_defaults(func=_schemas)
    return parser


def _configure_logging(verbose: bool) -> logging.Handler:
    """The command's stderr handler; ``main`` removes it again (main may run inside another program)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG if verbose else logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose:
        # The one error line says what pika's per-attempt errors and the broker's
        # "waiting for it" warnings would say at length.
        logging.getLogger("pika").setLevel(logging.CRITICAL)
        logging.getLogger("backlane.broker").setLevel(logging.CRITICAL)
    return handler


def _parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """backlane's parser; with the pipelines' own commands when the line names none of backlane's
    (or asks for help), which loads the application first."""
    builtin: list[str] = []
    parser = build_parser(names=builtin)
    word, app = _command_word(argv)
    if word in builtin or (word is None and not {"-h", "--help"} & set(argv)):
        return parser
    from backlane.app import load_app, run_as_command

    run_as_command()
    return build_parser(load_app(app).registry)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = _parser_for(argv)
    except KeyboardInterrupt:
        say(file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the application did not load: one line, as for any command
        problem = _problem(exc, "--debug" in argv)
        say(f"backlane: {problem.line}", file=sys.stderr)
        return problem.status
    args = parser.parse_args(argv)  # a usage mistake: argparse's usage line and exit status 2
    if signal.getsignal(signal.SIGINT) is _quiet_exit:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    handler = _configure_logging(args.verbose)
    try:
        from backlane.app import run_as_command

        run_as_command()
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        say(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `backlane dead-letters list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_UNAVAILABLE
    except Exception as exc:
        problem = _problem(exc, args.debug)
        say(f"backlane: {problem.line}", file=sys.stderr)
        return problem.status
    finally:
        logging.getLogger().removeHandler(handler)


def _problem(exc: Exception, debug: bool) -> Problem:
    """The one line for ``exc`` (the traceback too with --debug)."""
    from backlane.problems import explain

    problem = explain(exc)
    if debug:
        import traceback

        traceback.print_exc()
    if problem is None:  # nobody foresaw this one: still one line, the traceback on --debug
        from backlane.errors import named_cause

        cause = named_cause(exc, 300)
        problem = Problem(f"unexpected error ({cause}); run with --debug for the traceback", EXIT_UNAVAILABLE)
    return problem


if __name__ == "__main__":
    sys.exit(main())
