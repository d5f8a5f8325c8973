"""Registration: the one mechanism that turns a :class:`Pipeline` into actors.

``register(pipeline)`` declares its per-item actor on its own queue; the
scheduler later declares its discover actor (:mod:`backlane.core.discovery`). Adding
a pipeline is one module that calls ``register``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import dramatiq
from dramatiq.broker import Broker
from dramatiq.middleware import CurrentMessage

from backlane.core.log_limits import cut
from backlane.core.pipeline import Context, Item, Pipeline, Purpose
from backlane.core.processing import REQUEUED_OPTION, FinalFailure, RetryPolicy, run_item
from backlane.core.runtime import get_runtime
from backlane.errors import MalformedMessage

logger = logging.getLogger("backlane.registry")

#: Per-item actors yield to discover actors (priority 0) inside a worker: lower runs first.
ITEM_PRIORITY = 10


class RegistrationError(ValueError):
    """A pipeline declaration that cannot work (duplicate name, bad queue name)."""


@dataclass
class Registered:
    pipeline: Pipeline
    process_actor: dramatiq.Actor  # type: ignore[type-arg]
    discover_actor: dramatiq.Actor | None = None  # type: ignore[type-arg]

    @property
    def name(self) -> str:
        return self.pipeline.name

    def context(self) -> Context:
        return Context(self.pipeline, get_runtime())

    def retry_policy(self, ctx: Context) -> RetryPolicy:
        config, defaults = ctx.config, ctx.settings.retries
        return RetryPolicy(
            max_retries=config.max_retries if config.max_retries is not None else defaults.max_retries,
            min_backoff_ms=config.min_backoff_ms or defaults.min_backoff_ms,
            max_backoff_ms=config.max_backoff_ms or defaults.max_backoff_ms,
            max_age_ms=defaults.max_age_ms,
        )

    def process(self, *args: Item, **kwargs: Item) -> None:
        """Body of the per-item actor: exactly one positional argument, the item.

        Everything that can fail, the reopening of a requeued item included, runs
        inside :func:`run_item`, so every exception is classified in one place."""
        ctx = self.context()
        if len(args) != 1 or kwargs:
            bad = MalformedMessage(
                f"expected exactly one item argument, got args={cut(repr(args))} kwargs={cut(repr(kwargs))}"
            )
            run_item(self.name, None, _raiser(bad), self.retry_policy(ctx))
            return
        item = args[0]
        pipeline = self.pipeline
        message = CurrentMessage.get_current_message()

        def work() -> None:
            if message is not None and message.options.get(REQUEUED_OPTION) and pipeline.reopen:
                # An operator requeued this dead letter after fixing its cause: the row's
                # "failed" must not make the idempotent process skip it. Forgotten only once done.
                pipeline.reopen(ctx, item)
            if message is not None:
                message.options.pop(REQUEUED_OPTION, None)
            pipeline.process(ctx, item)

        def record_failure(reason: str) -> None:
            if pipeline.on_failure is not None:
                pipeline.on_failure(ctx, item, reason)

        run_item(self.name, item, work, self.retry_policy(ctx), record_failure)


def _raiser(error: Exception):  # type: ignore[no-untyped-def]
    def work() -> None:
        raise error

    return work


class Registry:
    def __init__(self) -> None:
        self._pipelines: dict[str, Registered] = {}

    def register(self, pipeline: Pipeline, broker: Broker | None = None) -> Registered:
        if pipeline.name in self._pipelines:
            raise RegistrationError(f"a pipeline named {pipeline.name!r} is already registered")
        if pipeline.fetch is None:
            raise RegistrationError(f"pipeline {pipeline.name!r} has neither a fetch nor a table to claim items from")
        broker = broker or get_runtime().broker
        holder: list[Registered] = []

        def process(*args: Item, **kwargs: Item) -> None:
            holder[0].process(*args, **kwargs)

        process.__name__ = process.__qualname__ = f"process_{pipeline.name}"
        try:
            actor = dramatiq.actor(
                actor_name=f"process_{pipeline.name}",
                queue_name=pipeline.queue_name,
                broker=broker,
                throws=(FinalFailure,),
                priority=ITEM_PRIORITY,
                **(pipeline.actor_options(get_runtime().config(pipeline)) if pipeline.actor_options else {}),
            )(process)
        except ValueError as exc:
            raise RegistrationError(f"pipeline {pipeline.name!r}: {exc}") from None
        registered = Registered(pipeline, actor)
        holder.append(registered)
        self._pipelines[pipeline.name] = registered
        return registered

    def get(self, name: str) -> Registered:
        try:
            return self._pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self._pipelines)) or "none"
            raise KeyError(f"no pipeline named {name!r} (registered: {known})") from None

    def __iter__(self) -> Iterator[Registered]:
        return iter(self._pipelines.values())

    def by_purpose(self, purpose: Purpose | None = None) -> list[Registered]:
        return [r for r in self if purpose is None or r.pipeline.purpose == purpose]


#: The process-wide registry that ``actors`` fills.
REGISTRY = Registry()


def register(pipeline: Pipeline) -> Registered:
    return REGISTRY.register(pipeline)
