"""A pipeline, declared once.

A pipeline is data: a name, a purpose, its settings class (its section is read
from ``BACKLANE_<NAME>__*``), ``fetch(ctx, limit)`` (claim due items) and
``process(ctx, item)`` (do one). A pipeline over a table declares its
:class:`~backlane.core.table.ItemTable` instead of writing ``fetch``, ``stats``,
``on_failure`` and ``reopen``. The registry turns
it into a per-item actor on its own queue (and its :class:`Inbox`, if it has one,
into an actor on the inbox's queue) and the scheduler into a discover actor
on the ``discover`` queue. Items are JSON values, usually a row id: the row stays
the source of truth. The same functions may be registered twice under two names,
each reading its own section with its own ``defaults``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from backlane.settings import PipelineSettings, Settings

if TYPE_CHECKING:
    from backlane.core.clock import Clock
    from backlane.core.controls import PauseState
    from backlane.core.health import HealthRow
    from backlane.core.listed import FailedItems
    from backlane.core.runtime import Runtime
    from backlane.core.table import ItemTable
    from backlane.db.engine import Database
    from backlane.messaging.events import EventTopology

Item = Any  # a JSON value: an id, or a small dict naming the item
#: A pipeline's settings class: ``Pipeline[S]`` and ``Context[S]``, so ``ctx.config`` is an ``S``.
S = TypeVar("S", bound=PipelineSettings)


class Purpose(StrEnum):
    INGESTION = "ingestion"  # brings outside data in
    INTERNAL = "internal"  # works on our own data
    EXPORT = "export"  # sends our data out


@dataclass(frozen=True)
class Inbox(Generic[S]):
    """Messages other services publish to a pipeline, on a queue of their own.

    The registry declares an actor named ``actor_name`` on ``queue``; each message is
    run like an item (errors classified, retried, dead-lettered with the reason):
    ``parse`` reads the message's arguments (the wire format, in this one function)
    and ``accept`` decides what they mean, returning the items to hand to the
    pipeline's per-item actor at once (none: nothing to do, or discover takes it)."""

    queue: str
    actor_name: str
    #: The message's positional and keyword arguments → what it says; raises on a malformed one.
    parse: Callable[[tuple[Any, ...], dict[str, Any]], Any]
    #: What the parsed message means: the items to send to the per-item actor.
    accept: Callable[[Context[S], Any], Sequence[Item]]
    #: The MassTransit message type (``Namespace:TypeName``, from the settings) the queue also
    #: takes, published unchanged by .NET services (see backlane.messaging.masstransit).
    masstransit_type: Callable[[S], str] | None = None
    #: That message's ``message`` → the single argument ``parse`` reads; raises ValueError.
    from_masstransit: Callable[[Any], Any] | None = None
    #: Whether that type's exchange is bound to the queue (default yes); no: the binding is
    #: removed at declare time (the pipeline publishes that type itself, see ``dispatch``).
    masstransit_bind: Callable[[S], bool] | None = None


@dataclass(frozen=True)
class Command(Generic[S]):
    """One of a pipeline's own operator commands: ``backlane <pipeline> <name> ...``
    (``backlane exports add``). The CLI adds it under the pipeline's name, checks the
    database's schema, then calls ``run`` with the pipeline's context and the parsed
    arguments; a mistake is a :class:`~backlane.errors.Problem` (one line, its exit status)."""

    name: str
    help: str
    #: Do it; returns the exit status (None: 0).
    run: Callable[[Context[S], argparse.Namespace], int | None]
    #: Add the command's arguments to its parser.
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


@dataclass(frozen=True)
class Pipeline(Generic[S]):
    """One pipeline's declaration; ``S`` is its settings class, so its functions take a
    ``Context[S]`` whose ``config`` is typed (``Context[OrdersSettings]``)."""

    name: str
    purpose: Purpose
    #: Do the work for one item; idempotent; raise to retry or fail (see backlane.errors).
    process: Callable[[Context[S], Item], None]
    #: The table whose rows are the items: gives ``fetch``, ``stats``, ``on_failure``,
    #: ``reopen`` and ``failed_reason`` (each still overridable by passing it).
    table: ItemTable | None = None
    #: Claim up to ``limit`` due items (with a lease) and return them; required without a table.
    fetch: Callable[[Context[S], int], Sequence[Item]] | None = None
    #: Record a final failure on the item's row (permanent error or retries spent).
    on_failure: Callable[[Context[S], Item, str], None] | None = None
    #: Make a failed item workable again; called when an operator requeues its dead letter.
    reopen: Callable[[Context[S], Item], None] | None = None
    #: The reason an item's row already failed for good with, None while it has not: a message
    #: redelivered after that failure is dead-lettered again (its first letter may be lost).
    failed_reason: Callable[[Context[S], Item], str | None] | None = None
    #: Settle items as cancelled by an operator: ``(ctx, items, "cancelled by WHO: WHY")``, the
    #: items it cancelled (those with work left that may still be cancelled); the table gives it.
    cancel: Callable[[Context[S], Sequence[Item], str], list[Item]] | None = None
    #: Make cancelled items due again: ``(ctx, items, why)``, the items reopened.
    uncancel: Callable[[Context[S], Sequence[Item], str], list[Item]] | None = None
    #: Counts for ``backlane status``: due, in_flight, done, failed (see backlane.db.claims.status_counts).
    stats: Callable[[Context[S]], dict[str, int]] | None = None
    #: The items that failed for good, newest first, with their reasons, for a pipeline whose
    #: items are not rows (:class:`~backlane.core.listed.ListedItems` gives it): ``(ctx, limit,
    #: page, search)``, one bounded page; the dashboard's pipeline page lists them.
    failed_items: Callable[[Context[S], int, int, str], FailedItems] | None = None
    #: Its parts an operator may pause on their own (``backlane pause catalog stock``): their
    #: names; the pipeline's own code looks at ``ctx.paused(part)`` (see :meth:`Context.paused`).
    parts: Callable[[Context[S]], Sequence[str]] | None = None
    #: The recorded runs of one of its parts, newest first, at most ``limit`` (catalog: a section's
    #: refreshes, what each read and wrote): plain values, shown on the part's dashboard page.
    history: Callable[[Context[S], str, int], Sequence[Mapping[str, Any]]] | None = None
    #: Its health, one typed row per part (a section, an upstream API), for /health, status and
    #: the dashboard (see :class:`backlane.core.health.HealthRow`).
    health: Callable[[Context[S]], Sequence[HealthRow]] | None = None
    description: str = ""
    #: Defaults to the pipeline's name: one queue per pipeline.
    queue: str = ""
    #: Free-form values for the handler (e.g. the vendor a generic handler serves).
    params: dict[str, Any] = field(default_factory=dict)
    #: ``backlane trigger NAME TARGET``: do what an operator asked (catalog: refresh one section now)
    #: and return the items to send at once (none: the next discover takes it).
    trigger: Callable[[Context[S], str], Sequence[Item]] | None = None
    #: When what ``trigger`` was asked for will really run, in words, when not at once (a catalog
    #: section held by its endpoint's rate limit: "held by rate limit catalog until 10:42:00 UTC").
    trigger_when: Callable[[Context[S], str], str | None] | None = None
    #: Its settings section: read from ``BACKLANE_<NAME>__*`` (see :mod:`backlane.core.config`).
    config: type[S] = PipelineSettings  # type: ignore[assignment]  # S is PipelineSettings when not given
    #: This registration's own defaults for that section (e.g. ``{"max_items": 5}``).
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: Extra Dramatiq options of the per-item actor, from its section (e.g. its own ``time_limit``).
    actor_options: Callable[[S], dict[str, Any]] | None = None
    #: The event exchanges it publishes to, each with its bounded recent queue: `backlane
    #: declare-queues` declares them, so other services can bind before the first event.
    events: Callable[[S], Sequence[EventTopology]] | None = None
    #: What other services publish to this pipeline (orders: OrderCreated on ``orders_inbox``).
    inbox: Inbox[S] | None = None
    #: What discover does with the items it claimed before sending one per-item message each:
    #: returns the items still to send (orders' publish-only mode publishes OrderCreated for
    #: another service's consumer instead and returns none). None: all of them are sent.
    dispatch: Callable[[Context[S], Sequence[Item]], Sequence[Item]] | None = None
    #: Its own operator commands, under ``backlane <name>`` (see :class:`Command`).
    commands: Sequence[Command[S]] = ()
    #: What ``backlane <name> --help`` says above its commands (examples welcome).
    commands_help: str = ""

    def __post_init__(self) -> None:
        if self.table is not None:
            for hook, function in self.table.hooks().items():
                if getattr(self, hook) is None:
                    object.__setattr__(self, hook, function)  # frozen: filled once, before anyone reads it

    @property
    def queue_name(self) -> str:
        return self.queue or self.name


@dataclass(frozen=True)
class Context(Generic[S]):
    """What a pipeline's functions get: their declaration, settings and the runtime."""

    pipeline: Pipeline[S]
    runtime: Runtime

    @property
    def config(self) -> S:
        """This pipeline's settings section, an instance of its declared ``config`` class."""
        return cast(S, self.runtime.config(self.pipeline))

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def db(self) -> Database:
        return self.runtime.database

    @property
    def clock(self) -> Clock:
        return self.runtime.clock

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"backlane.pipeline.{self.pipeline.name}")

    def paused(self, part: str = "") -> PauseState | None:
        """This pipeline's pause (``part``: one of its parts, e.g. a catalog section, or
        ``"@inbox"``), as this process last read it (every ``controls.refresh_seconds``); None
        while it runs."""
        return self.runtime.controls.state().paused(self.pipeline.name, part)

    def hold_while_paused(self, part: str = "") -> None:
        """Raise :class:`~backlane.errors.Paused` when ``part`` is paused: the item waits and
        comes back, none of its retries spent (a catalog section's refresh)."""
        pause = self.paused(part)
        if pause is not None:
            from backlane.errors import Paused

            raise Paused(pause.what, self.settings.controls.paused_recheck_seconds)
