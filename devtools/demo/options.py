"""The demo's command line, checked before anything starts (a mistake: usage line, exit status 2).

The options of the demo itself live here; each demo part adds its own (``--orders``),
and reads them back from the parsed arguments (:meth:`DemoPart.configure`). The
checkers are public so that parts check their values the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from devtools.demo.part import DemoPart


@dataclass(frozen=True)
class DemoOptions:
    """The demo's own options (a part keeps its own, see :meth:`DemoPart.configure`)."""

    processes: int = 2
    threads: int = 8
    keep: bool = False
    stay: bool = False
    #: Seconds to wait for every pipeline to settle.
    timeout: float = 900.0
    #: Where stored objects live: ``directory`` (a folder) or ``s3`` (a private S3 server on loopback).
    storage: str = "directory"


def whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"a whole number from {low} to {high}, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"a whole number from {low} to {high}, not {value}")
        return value

    return parse


def share(text: str) -> float:
    """An argparse type: a share from 0 to 0.9 (1 would fail everything)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a share from 0 to 0.9, not {text!r}") from None
    if not 0 <= value <= 0.9:
        raise argparse.ArgumentTypeError(f"a share from 0 to 0.9 (e.g. 0.2 for 20%), not {value}")
    return value


def seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of seconds, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a number of seconds above 0, not {value:g}")
    return value


def build_parser(parts: Sequence[DemoPart] = ()) -> argparse.ArgumentParser:
    """The demo's options, after those its parts add."""
    shown = ", ".join(part.name for part in parts) or "none has a demo part"
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description=(
            "Run the whole system on this machine: RabbitMQ, the simulators, a worker and the clock,\n"
            f"with sample data for every pipeline ({shown}), watched\n"
            "live until everything has settled. Ctrl-C stops everything."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for part in parts:
        part.add_options(parser)
    parser.add_argument("--processes", type=whole(1, 16), default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=whole(1, 64), default=8, help="threads per worker process (default 8)")
    parser.add_argument(
        "--timeout", type=seconds, default=900.0, metavar="SECONDS", help="give up after this long (default 900)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the demo database afterwards (logs are kept anyway)")
    parser.add_argument(
        "--storage",
        choices=("directory", "s3"),
        default="directory",
        help="stored objects in a directory (default) or on a private S3 server on loopback (docs/storage.md)",
    )
    parser.add_argument(
        "--stay",
        action="store_true",
        help="keep everything running after the summary, until Ctrl-C, to try backlane commands on it",
    )
    return parser


def parse_options(argv: Sequence[str] | None = None, parts: Sequence[DemoPart] = ()) -> DemoOptions:
    """The demo's options; each part is handed the parsed arguments to take its own from."""
    args = build_parser(parts).parse_args(argv)
    for part in parts:
        part.configure(args)
    return DemoOptions(args.processes, args.threads, args.keep, args.stay, args.timeout, args.storage)
