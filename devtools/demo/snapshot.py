"""One look at every demo part, and which of the waits it reports hold steadily.

The snapshot core knows no pipeline: each part reads its own tables and simulator
(:meth:`DemoPart.look`); this module gathers the results under the parts' names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from devtools.demo.part import DemoContext, DemoPart, PartResult, Wait


@dataclass(frozen=True)
class Snapshot:
    """Every part's result at one moment, ``elapsed`` seconds into the watch."""

    elapsed: float
    results: Mapping[str, PartResult]

    @property
    def settled(self) -> bool:
        return all(result.settled for result in self.results.values())

    @property
    def unsettled(self) -> list[str]:
        return [name for name, result in self.results.items() if not result.settled]

    @property
    def waiting(self) -> list[Wait]:
        return [wait for result in self.results.values() for wait in result.waiting]


def take(parts: Sequence[DemoPart], ctx: DemoContext, elapsed: float) -> Snapshot:
    """Look at every part now."""
    return Snapshot(elapsed, {part.name: part.look(ctx) for part in parts})


@dataclass
class Steady:
    """The waits said in two looks in a row: a discover may be claiming those items right now, so a
    wait seen once is not said yet."""

    _seen: set[str] = field(default_factory=set)

    def filter(self, waits: Sequence[Wait]) -> list[Wait]:
        steady = [wait for wait in waits if wait.key in self._seen]
        self._seen = {wait.key for wait in waits}
        return steady
