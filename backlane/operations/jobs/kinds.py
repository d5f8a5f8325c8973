"""The kinds of bulk job, registered in one place: a kind's name -> how to count what is left
and how to run it.

The runner (:mod:`.runner`) knows no kind: it takes the job's lease, asks its kind what is
left (``count``), hands it a :class:`Progress` and the job's ``params`` (``run``), and writes
what the kind reports. Adding a kind is one :func:`register_kind` call; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from backlane.problems import EXIT_USAGE, Problem

if TYPE_CHECKING:
    from backlane.core.runtime import Runtime


class Progress(Protocol):
    """What a kind's ``run`` is given: where it says what it did, and asks whether to stop."""

    def advance(self, done: int = 0, skipped: int = 0) -> None:
        """``done`` items done and ``skipped`` left in place since the last call."""

    def should_stop(self) -> bool:
        """True once the job is to stop (asked by an operator, Ctrl-C, the lease lost): the kind
        stops before its next item, leaving every item not done where it was."""

    def pace(self, rate: float | None) -> None:
        """Wait as long as needed to stay under ``rate`` items per second (None: no wait)."""


@dataclass(frozen=True)
class JobKind:
    """One kind of bulk job."""

    name: str
    #: What is left to do now, given the job's params: the runner sets ``total = done + count``.
    count: Callable[[Runtime, Mapping[str, Any]], int]
    #: Do it, item by item, through ``progress``; returns the one-line report of this run. Raises
    #: :class:`~backlane.errors.Problem` (or any error :func:`backlane.problems.explain` knows).
    run: Callable[[Runtime, Mapping[str, Any], Progress], str]
    #: What the job acts on, in words, for the audit trail and the pages: (target, detail).
    describe: Callable[[Mapping[str, Any]], tuple[str, str]]


_KINDS: dict[str, JobKind] = {}


def register_kind(kind: JobKind) -> JobKind:
    """Make ``kind`` a job kind (registering the same name again replaces it)."""
    _KINDS[kind.name] = kind
    return kind


def kind_of(name: str) -> JobKind:
    """The kind called ``name``; a :class:`Problem` naming the known ones when none is."""
    try:
        return _KINDS[name]
    except KeyError:
        raise Problem(
            f"no job kind {name!r}; the kinds are: {', '.join(sorted(_KINDS)) or 'none'}", EXIT_USAGE
        ) from None


def kinds() -> list[str]:
    return sorted(_KINDS)
