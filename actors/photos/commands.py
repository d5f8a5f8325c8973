"""``backlane product_photos similar ID`` (and ``delivery_photos``): the photos most like one."""

from __future__ import annotations

import argparse
from typing import Any

from actors.photos.similar import most_similar
from backlane import Command, Context, Problem
from backlane.errors import EXIT_USAGE, UnknownItem
from backlane.operations.terminal import escape_controls, say

#: Most neighbours a command shows.
MAX_LIMIT = 100


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("photo_id", type=_positive, help="the photo's id")
    parser.add_argument("--limit", type=_positive, default=5, help=f"how many to show (default 5, at most {MAX_LIMIT})")


def _similar(ctx: Context[Any], args: argparse.Namespace) -> int:
    limit = min(args.limit, MAX_LIMIT)
    try:
        neighbours = most_similar(ctx.db, args.photo_id, limit, owner=ctx.pipeline.name)
    except UnknownItem as exc:
        raise Problem(f"{exc.reason}: `backlane status` shows what {ctx.pipeline.name} has done", EXIT_USAGE) from None
    for neighbour in neighbours:
        subject = escape_controls(neighbour.subject or "-")
        key = escape_controls(neighbour.storage_key)
        say(f"{neighbour.photo_id:>8}  {neighbour.similarity:+.4f}  {subject}  {key}")
    return 0


COMMANDS: tuple[Command[Any], ...] = (
    Command("similar", "the photos most similar to one (cosine of their vectors, itself first)", _similar, _arguments),
)

COMMANDS_HELP = (
    "Photos whose vectors are nearest to a photo's (same registration, model and dimension).\n"
    "Examples:\n"
    "  backlane product_photos similar 42\n"
    "  backlane delivery_photos similar 7 --limit 10"
)
