"""The ``backlane`` command: migrate, pipelines, trigger, status, dead letters, schemas.

Each subcommand is a thin shell over a module that does the work, so the
same operations are importable from tests and scripts.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from backlane.app import load_app
from backlane.errors import SetupError
from backlane.settings import SettingsError

if TYPE_CHECKING:
    from backlane.operations.deadletter_admin import Listing


def _pipelines(args: argparse.Namespace) -> int:
    from backlane.core.pipeline import Purpose

    purpose = Purpose(args.purpose) if args.purpose else None
    rows = []
    for reg in load_app(args.app).registry.by_purpose(purpose):
        config = reg.context().config
        rows.append(
            {
                "name": reg.name,
                "purpose": reg.pipeline.purpose.value,
                "queue": reg.pipeline.queue_name,
                "schedule": config.tick,
                "max_items": config.max_items,
                "enabled": config.enabled,
                "description": reg.pipeline.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'NAME':<22} {'PURPOSE':<10} {'QUEUE':<22} {'SCHEDULE':<14} {'MAX':>5}  ENABLED")
    for row in rows:
        print(
            f"{row['name']:<22} {row['purpose']:<10} {row['queue']:<22} {row['schedule']:<14} "
            f"{row['max_items']:>5}  {'yes' if row['enabled'] else 'no'}"
        )
    return 0


def _trigger(args: argparse.Namespace) -> int:
    reg = load_app(args.app).registry.get(args.pipeline)
    if args.target:
        hook = reg.pipeline.trigger
        if hook is None:
            print(f"backlane: pipeline {args.pipeline} takes no trigger argument", file=sys.stderr)
            return 2
        items = hook(reg.context(), args.target)
        for item in items:
            reg.process_actor.send(item)
        print(
            f"{args.pipeline} {args.target}: {len(items)} item(s) queued"
            if items
            else f"{args.pipeline} {args.target}: requested; its next discover takes it when it can"
        )
        return 0
    assert reg.discover_actor is not None
    reg.discover_actor.send()
    print(f"discover for {args.pipeline} queued on 'discover'")
    return 0


def _status(args: argparse.Namespace) -> int:
    import time

    from backlane.operations.status import collect_status, render

    app = load_app(args.app)
    while True:
        status = collect_status(app.registry, app.runtime)
        if args.json:
            print(json.dumps(status, indent=2, default=str))
        else:
            text = render(status)
            print(("\033[H\033[2J" + text) if args.watch else text, flush=True)
        if not args.watch:
            return 1 if status["errors"] else 0
        time.sleep(args.watch)


def _dead_letters(args: argparse.Namespace) -> int:
    from backlane.operations import deadletter_admin as admin

    runtime = load_app(args.app).runtime
    url = runtime.settings.broker.url.get_secret_value()
    queues = [args.queue] if args.queue else sorted({a.queue_name for a in runtime.broker.actors.values()})
    missing_ok = not args.queue  # every queue: one never declared has no dead letters; a named one must exist
    if args.limit < 0:
        print("backlane: --limit must be 0 or more", file=sys.stderr)
        return 2
    try:
        if args.action == "list":
            return _list_dead_letters(args, admin.list_dead_letters(url, queues, args.limit, missing_ok=missing_ok))
        if args.action == "requeue":
            if bool(args.all) == bool(args.message_id):
                print("backlane: say which: --message-id ID or --all", file=sys.stderr)
                return 2
            report = admin.requeue(
                runtime.broker,
                url,
                queues,
                lambda d: args.all or d.message_id == args.message_id,
                first_only=bool(args.message_id),
                missing_ok=missing_ok,
            )
            print(report.summary(args.message_id))
            return 0 if report.requeued or args.all else 1
        if not args.yes:
            answer = input(f"purge every dead letter of {', '.join(queues)}? type 'purge' to confirm: ")
            if answer.strip() != "purge":
                print("nothing purged")
                return 1
        for queue, count in admin.purge(url, queues, missing_ok=missing_ok).items():
            print(f"purged {count} from {queue}.XQ")
        return 0
    except admin.AdminError as exc:
        print(f"backlane: {exc}", file=sys.stderr)
        return 2


def _list_dead_letters(args: argparse.Namespace, listings: list[Listing]) -> int:
    from backlane.operations import deadletter_admin as admin

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
        print(json.dumps([admin.display_row(letter) for letter in letters], indent=2, default=str))
        for line in summaries:
            print(line, file=sys.stderr)  # stdout stays one JSON document
        return 0
    for letter in letters:
        row = admin.display_row(letter)
        item = row["item"] if isinstance(row["item"], str) else json.dumps(row["item"])
        print(
            f"{row['failed_at']:<26} {row['queue']:<16} {row['actor']:<18} id={row['message_id']}"
            f" item={item} [{row['kind']}] {row['reason']}"
        )
    for line in summaries:
        print(line)
    return 0


def _declare_queues(args: argparse.Namespace) -> int:
    from backlane.messaging.queues import declare_all

    for name in declare_all(load_app(args.app).runtime.broker):
        print(f"declared {name} (+ {name}.DQ, {name}.XQ)")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from backlane.db.migrate import upgrade

    upgrade(args.url)
    print("database is at the latest revision")
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from backlane.operations.schemas import write_schemas

    for path in write_schemas(args.out):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backlane", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument(
        "--app",
        help="module(s) whose import registers the pipelines, as given to dramatiq "
        "(default: BACKLANE_APP, else 'scheduler')",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    migrate = sub.add_parser("migrate", help="apply the database migrations")
    migrate.add_argument("--url", help="database URL (default: BACKLANE_DATABASE__URL)")
    migrate.set_defaults(func=_migrate)

    status = sub.add_parser("status", help="pipelines, queue depths, breakers and freshness on one screen")
    status.add_argument("--json", action="store_true")
    status.add_argument("--watch", type=float, nargs="?", const=2.0, default=None, metavar="SECONDS")
    status.set_defaults(func=_status)

    dead = sub.add_parser("dead-letters", help="list, requeue or purge dead letters")
    dead.add_argument("action", choices=["list", "requeue", "purge"])
    dead.add_argument("--queue", help="one queue (default: all)")
    dead.add_argument("--message-id", help="requeue this message (one copy of it)")
    dead.add_argument("--all", action="store_true", help="requeue every dead letter there is when it starts")
    dead.add_argument("--yes", action="store_true", help="purge without asking")
    dead.add_argument(
        "--limit", type=int, default=100, metavar="N", help="list: show at most N dead letters (default 100)"
    )
    dead.add_argument("--json", action="store_true")
    dead.set_defaults(func=_dead_letters)

    declare = sub.add_parser("declare-queues", help="declare every queue on RabbitMQ (run once per deploy)")
    declare.set_defaults(func=_declare_queues)

    pipelines = sub.add_parser("pipelines", help="list the registered pipelines")
    pipelines.add_argument("--purpose", choices=["ingestion", "internal", "export"])
    pipelines.add_argument("--json", action="store_true")
    pipelines.set_defaults(func=_pipelines)

    trigger = sub.add_parser("trigger", help="run a pipeline's discover now, or its own trigger (catalog: a section)")
    trigger.add_argument("pipeline")
    trigger.add_argument("target", nargs="?", help="handed to the pipeline's trigger hook (catalog: a section name)")
    trigger.set_defaults(func=_trigger)

    schemas = sub.add_parser("schemas", help="write the JSON Schema of every message contract")
    schemas.add_argument("--out", default="contracts/schemas")
    schemas.set_defaults(func=_schemas)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (SettingsError, SetupError) as exc:
        print(f"backlane: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"backlane: {exc.args[0]}", file=sys.stderr)
        return 2
    except Exception as exc:
        line, status = _broker_problem(exc)
        if line is None:
            raise
        print(f"backlane: {line}", file=sys.stderr)
        return status


def _broker_problem(exc: Exception) -> tuple[str | None, int]:
    """One line and an exit status for RabbitMQ refusing us or staying away; (None, 0) otherwise."""
    import pika.exceptions
    from dramatiq.errors import BrokerConnectionError

    from backlane.messaging.broker_faults import EXIT_BROKER_REFUSED, BrokerAccessRefused, redact_url, refusal_of
    from backlane.settings import get_settings

    if isinstance(exc, BrokerAccessRefused):
        return str(exc), EXIT_BROKER_REFUSED
    if not isinstance(exc, BrokerConnectionError | pika.exceptions.AMQPError):
        return None, 0
    url = get_settings().broker.url.get_secret_value()
    reason = refusal_of(exc)
    if reason is not None:
        return str(BrokerAccessRefused(url, reason)), EXIT_BROKER_REFUSED
    return f"RabbitMQ at {redact_url(url)} is unreachable ({type(exc).__name__}: {exc})", 1


if __name__ == "__main__":
    sys.exit(main())
