"""Defining exports without Python: ``backlane exports add|list|remove``.

An export is a row in ``exports`` (name, format, path, optional interval); every
other column has a database default, so ``INSERT INTO exports (name, format, path)
VALUES ('products', 'csv', 'products.csv')`` defines one just as well. Discover
first runs a new export ``exports.initial_delay_seconds`` after it sees it.
Validation here gives one line per mistake; the worker checks the path again
(symlinks included) before it writes anything.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from actors.exports.files import path_conflict
from actors.exports.models import Export, ExportFormat, ExportRun
from backlane import Command, Context, PermanentError
from backlane.clients.files import relative_parts
from backlane.operations.terminal import escape_controls, say
from backlane.problems import EXIT_USAGE, Problem

if TYPE_CHECKING:
    from backlane.core.clock import Clock
    from backlane.db.engine import Database

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_INTERVAL = re.compile(r"^\s*(\d{1,12}(?:\.\d{1,9})?)\s*([smhd]?)\s*$")
#: The shortest and longest interval an export may have, seconds (1 s to 366 days, as
#: exports.interval_seconds): a run's next time is now + interval, which must stay a date.
MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS = 1.0, 366 * 86400.0


def parse_interval(text: str | None) -> float | None:
    """``300``, ``30s``, ``5m``, ``1h`` or ``1d`` as seconds, between 1 s and 366 days
    (None: the exports.interval_seconds setting)."""
    if text is None:
        return None
    match = _INTERVAL.match(text)
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match else 0.0
    if not MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS:
        raise Problem(
            f"--interval {escape_controls(text)!r}: give a duration from 1s to 366d such as 300, 30s, 5m, 1h or 1d",
            EXIT_USAGE,
        )
    return seconds


def validate(name: str, fmt: str, path: str) -> str:
    """The normalised path, or a one-line Problem naming the mistake."""
    if not NAME.match(name):
        raise Problem(
            f"export name {name!r}: use 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit",
            EXIT_USAGE,
        )
    formats = [f.value for f in ExportFormat]
    if fmt not in formats:
        raise Problem(f"export format {fmt!r}: use one of {', '.join(formats)}", EXIT_USAGE)
    try:
        return str(relative_parts(path, "export path"))
    except PermanentError as exc:
        raise Problem(f"{exc}; give a path relative to the output directory", EXIT_USAGE) from None


def add_export(db: Database, clock: Clock, name: str, fmt: str, path: str, interval: float | None) -> int:
    """Insert the export, refusing (one line) a path that collides with another export's files."""
    path = validate(name, fmt, path)
    now = clock.now()
    values = {"name": name, "format": fmt, "path": path, "interval_seconds": interval}
    try:
        with db.transaction() as session:
            others = [(n, p) for n, p in session.execute(select(Export.name, Export.path)) if n != name]
            conflict = path_conflict(path, others)
            if conflict is not None:
                raise Problem(f"{conflict}; give each export a file of its own", EXIT_USAGE)
            return int(
                session.execute(
                    insert(Export).returning(Export.id), {**values, "created_at": now, "updated_at": now}
                ).scalar_one()
            )
    except IntegrityError:
        raise Problem(f"an export named {name!r} exists already: `backlane exports list`", EXIT_USAGE) from None


def list_exports(db: Database) -> list[dict[str, Any]]:
    with db.transaction() as session:
        exports = list(session.scalars(select(Export).order_by(Export.name)))
        outcomes = {
            run.id: (run.outcome, run.error)
            for run in session.scalars(
                select(ExportRun).where(ExportRun.id.in_([e.run_id for e in exports if e.run_id]))
            )
        }
    return [
        {
            "name": e.name,
            "format": e.format,
            "path": e.path,
            "interval_seconds": e.interval_seconds,
            "next_run_at": e.next_run_at,
            "last_success_at": e.last_success_at,
            "run": outcomes.get(e.run_id, (None, None))[0] if e.run_id else None,
            "error": outcomes.get(e.run_id, (None, None))[1] if e.run_id else None,
        }
        for e in exports
    ]


def remove_export(db: Database, name: str) -> None:
    with db.transaction() as session:
        gone = session.execute(delete(Export).where(Export.name == name).returning(Export.id)).first()
    if gone is None:
        raise Problem(f"no export named {name!r}: `backlane exports list` shows them", EXIT_USAGE)


def _add(ctx: Context[Any], args: argparse.Namespace) -> int:
    add_export(ctx.db, ctx.clock, args.name, args.format, args.path, parse_interval(args.interval))
    every = f"every {args.interval}" if args.interval else f"on {ctx.pipeline.name}.interval_seconds"
    say(f"export {escape_controls(args.name)} added: {args.format} to {escape_controls(args.path)}, {every}")
    return 0


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="unique name (letters, digits, '_', '.', '-')")
    parser.add_argument("--format", required=True, choices=[f.value for f in ExportFormat])
    parser.add_argument("--path", required=True, help="file to write, relative to exports.output_dir")
    parser.add_argument("--interval", help="time between runs: 300, 30s, 5m, 1h (default: exports.interval_seconds)")


def _remove(ctx: Context[Any], args: argparse.Namespace) -> int:
    remove_export(ctx.db, args.name)
    say(f"export {escape_controls(args.name)} removed")
    return 0


def _name_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")


def _list(ctx: Context[Any], args: argparse.Namespace) -> int:
    rows = list_exports(ctx.db)
    if not rows:
        say("no exports: `backlane exports add NAME --format csv --path products.csv`")
    for row in rows:
        interval = f"{row['interval_seconds']:g}s" if row["interval_seconds"] else "default"
        state = row["run"] or ("ok" if row["last_success_at"] else "new")
        field = {key: escape_controls(value) for key, value in row.items()}  # one line per export
        next_run = row["next_run_at"] or "-"
        line = f"{field['name']}  {field['format']}  {field['path']}  every {interval}  next {next_run}"
        say(f"{line}  {escape_controls(state)}" + (f": {field['error']}" if row["error"] else ""))
    return 0


#: ``backlane exports add|list|remove``.
COMMANDS: tuple[Command[Any], ...] = (
    Command("add", "define an export", _add, _add_arguments),
    Command("list", "list the exports and their last run", _list),
    Command("remove", "remove an export and its run history", _remove, _name_argument),
)

COMMANDS_HELP = (
    "An export writes the product catalogue to PATH (under exports.output_dir) every INTERVAL.\n"
    "Examples:\n"
    "  backlane exports add products --format csv --path products.csv --interval 5m\n"
    "  backlane exports list\n"
    "  backlane exports remove products\n"
    "Or in SQL: INSERT INTO exports (name, format, path) VALUES ('products', 'csv', 'products.csv');"
)
