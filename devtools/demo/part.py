"""What one pipeline contributes to the demo, and what the demo hands it: the only interface the
runner, the snapshot and the rendering know, so none of them names a pipeline.

A demo part is a module ``devtools.demo.parts.<name>`` whose ``PART`` is a
:class:`DemoPart` subclass. It is built with the registrations it covers (one, or
several registrations of one handler, as staging's vendors are) and overrides what
its pipeline needs; every hook has a do-nothing default.

In the order the runner calls them:

1. :meth:`~DemoPart.add_options`, :meth:`~DemoPart.configure`: its command-line options;
2. :meth:`~DemoPart.simulator`: the simulator its clients talk to (parts naming the
   same group share one process);
3. :meth:`~DemoPart.environment`: the settings the worker needs for it (its clients' URLs);
4. :meth:`~DemoPart.seed`: its sample data, said as a phrase of the "sample data" line;
5. :meth:`~DemoPart.start`, :meth:`~DemoPart.first_discover`: once the worker runs, what it
   publishes, and which pipelines' first discover is asked for at once;
6. :meth:`~DemoPart.look` each second, then :meth:`~DemoPart.nudge` while it has not settled;
7. :meth:`~DemoPart.outcome` and :meth:`~DemoPart.failures` for the summary.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backlane.core.registry import Registered
from backlane.db.engine import Database
from devtools.demo.errors import DemoError
from devtools.demo.messages import publish, trigger_discover


@dataclass(frozen=True)
class SimulatorUse:
    """A simulator a part's clients talk to. Parts naming the same ``group`` share one process,
    started with all their ``args``; ``plays`` says what it stands in for, on the line printed."""

    group: str
    args: tuple[str, ...] = ()
    plays: str = ""


@dataclass(frozen=True)
class Wait:
    """Something only the clock's next tick will pick up. ``key`` names it from one look to the
    next: it is shown once it holds for two looks in a row (a discover may be claiming it right now)."""

    key: str
    text: str


@dataclass(frozen=True)
class PartResult:
    """One look at a part: its progress lines, whether it has settled, and what waits for a tick."""

    lines: tuple[str, ...]
    settled: bool
    waiting: tuple[Wait, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """A part's summary: the lines that prove its result, and the problems that fail the demo."""

    lines: tuple[str, ...]
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Failure:
    """An item that failed for good: the queue its dead letter is on, the item, and why."""

    queue: str
    item: str
    reason: str | None


@dataclass(frozen=True)
class DemoContext:
    """What the runner started, handed to every part's hooks."""

    workdir: Path
    db: Database
    db_url: str
    #: The framework's storage root (``BACKLANE_STORAGE__ROOT``).
    storage: Path
    amqp_url: str
    #: Each simulator group's base URL.
    simulators: Mapping[str, str]
    #: When the sample data was made.
    now: datetime

    def simulator_url(self, group: str) -> str:
        try:
            return self.simulators[group]
        except KeyError:
            raise DemoError(f"no simulator {group!r} was started (a part uses it without asking for it)") from None

    def publish(self, bodies: Sequence[tuple[str, bytes]]) -> None:
        """Publish (queue, body) pairs as a service without Dramatiq would."""
        publish(self.amqp_url, bodies)

    def trigger(self, pipelines: Sequence[str]) -> None:
        """Ask for a discover of these pipelines now, as ``backlane trigger NAME`` does."""
        trigger_discover(self.amqp_url, pipelines)


def now() -> datetime:
    return datetime.now(UTC)


def next_tick_in() -> int:
    """Seconds until the clock's next every-minute tick (periodiq ticks at second 0)."""
    return 60 - datetime.now().second


class DemoPart:
    """One pipeline in the demo (or several registrations of one handler). Override what it needs."""

    def __init__(self, name: str, registered: Sequence[Registered[Any]]) -> None:
        #: The label of its progress and summary lines: its module's name.
        self.name = name
        self.registered = tuple(registered)

    @property
    def pipelines(self) -> tuple[str, ...]:
        """The registered pipelines it covers, by name."""
        return tuple(r.name for r in self.registered)

    def queue(self, pipeline: str) -> str:
        """The queue a pipeline's dead letters are on (what ``dead-letters requeue --queue`` takes)."""
        return next(r.pipeline.queue_name for r in self.registered if r.name == pipeline)

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        """Add its own options to the demo's command line."""

    def configure(self, args: argparse.Namespace) -> None:
        """Take its options' values from the parsed command line."""

    def simulator(self) -> SimulatorUse | None:
        """The simulator its clients talk to, if any."""
        return None

    def environment(self, ctx: DemoContext) -> dict[str, str]:
        """Settings every process of the demo needs for it, such as its clients' base URLs."""
        return {}

    def seed(self, ctx: DemoContext) -> str:
        """Write its sample data; the phrase that says what it is."""
        return ""

    def start(self, ctx: DemoContext) -> tuple[str, ...]:
        """Once the worker and the clock run: announce work as the outside world would; lines said."""
        return ()

    def first_discover(self) -> tuple[str, ...]:
        """Pipelines whose first discover the demo asks for at once instead of waiting for the clock."""
        return self.pipelines

    def look(self, ctx: DemoContext) -> PartResult:
        """Where it stands now."""
        return PartResult((), settled=True)

    def nudge(self, ctx: DemoContext) -> tuple[str, ...]:
        """After a look that found it unsettled: help it along (trigger more); notes to say once."""
        return ()

    def outcome(self, ctx: DemoContext) -> Outcome:
        """Its result once everything settled, with the checks that prove it."""
        return Outcome(())

    def failures(self, ctx: DemoContext) -> list[Failure]:
        """Every item of it that failed for good."""
        return []

    def on_purpose(self) -> str:
        """The sample item made to fail for good, if any ("the broken track")."""
        return ""
