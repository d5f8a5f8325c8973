"""Registration: the one mechanism that turns a :class:`Pipeline` into actors.

``register(pipeline)`` declares its per-item actor on its own queue, and its
inbox's actor when it has one; the scheduler later declares its discover actor
(:mod:`backlane.core.discovery`). Adding a pipeline is one module that calls ``register``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic

import dramatiq
from dramatiq.broker import Broker
from dramatiq.middleware import CurrentMessage

from backlane.core.log_limits import cut
from backlane.core.pipeline import Context, Inbox, Item, Pipeline, Purpose, S
from backlane.core.processing import REQUEUED_OPTION, RetryPolicy, run_item, wait_while_paused
from backlane.core.runtime import get_runtime
from backlane.db import locations
from backlane.db.models.controls import INBOX_PART
from backlane.errors import FailedEarlier, FinalFailure, MalformedMessage, RegistrationError

logger = logging.getLogger("backlane.registry")

#: Per-item actors yield to discover actors (priority 0) inside a worker: lower runs first.
ITEM_PRIORITY = 10


@dataclass
class Registered(Generic[S]):
    pipeline: Pipeline[S]
    process_actor: dramatiq.Actor  # type: ignore[type-arg]
    discover_actor: dramatiq.Actor | None = None  # type: ignore[type-arg]
    inbox_actor: dramatiq.Actor | None = None  # type: ignore[type-arg]
    #: Built once per pipeline, not per message: rebuilt only when the runtime or the section
    #: it was built from is replaced (tests install their own).
    _context: Context[S] | None = field(default=None, init=False, repr=False, compare=False)
    _policy: tuple[Any, Any, RetryPolicy] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.pipeline.name

    def context(self) -> Context[S]:
        runtime = get_runtime()
        ctx = self._context
        if ctx is None or ctx.runtime is not runtime:
            ctx = self._context = Context(self.pipeline, runtime)
        return ctx

    def retry_policy(self, ctx: Context[S]) -> RetryPolicy:
        config, defaults = ctx.config, ctx.settings.retries
        cached = self._policy
        if cached is not None and cached[0] is config and cached[1] is defaults:
            return cached[2]
        policy = RetryPolicy(
            max_retries=config.max_retries if config.max_retries is not None else defaults.max_retries,
            min_backoff_ms=config.min_backoff_ms or defaults.min_backoff_ms,
            max_backoff_ms=config.max_backoff_ms or defaults.max_backoff_ms,
            max_age_ms=defaults.max_age_ms,
            max_waits=defaults.max_waits,
        )
        self._policy = (config, defaults, policy)
        return policy

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
        pause = ctx.paused()
        if pause is not None:
            wait_while_paused(self.name, pause.what, ctx.settings.controls.paused_recheck_seconds)

        def work() -> None:
            requeued = message is not None and bool(message.options.get(REQUEUED_OPTION))
            if getattr(message, "redelivered", False) and not requeued and pipeline.failed_reason is not None:
                # RabbitMQ gave this delivery before and it was never acked: if the row failed
                # then, its dead letter may have been lost with the connection. Write it again
                # (requeue handles a message id once, so a second copy is harmless).
                reason = pipeline.failed_reason(ctx, item)
                if reason is not None:
                    raise FailedEarlier(reason or "its row had already failed")
            if requeued and pipeline.reopen:
                # An operator requeued this dead letter after fixing its cause: the row's
                # "failed" must not make the idempotent process skip it. Forgotten only once done.
                pipeline.reopen(ctx, item)
            if message is not None:
                message.options.pop(REQUEUED_OPTION, None)
            pipeline.process(ctx, item)

        def record_failure(reason: str) -> None:
            if pipeline.on_failure is not None:
                pipeline.on_failure(ctx, item, reason)
            _fault(ctx, self.process_actor.actor_name, item, message, reason)

        run_item(self.name, item, work, self.retry_policy(ctx), record_failure)

    def receive(self, *args: Any, **kwargs: Any) -> None:
        """Body of the inbox actor: one message from another service, run like an item
        (without a row to mark failed: a bad message is dead-lettered with its reason)."""
        inbox = self.pipeline.inbox
        assert inbox is not None  # only an inbox's actor calls this
        ctx = self.context()

        message = CurrentMessage.get_current_message()
        pause = ctx.paused(INBOX_PART)
        if pause is not None:
            wait_while_paused(inbox.actor_name, pause.what, ctx.settings.controls.paused_recheck_seconds)
        origin = _origin(message)

        def work() -> None:
            for item in inbox.accept(ctx, inbox.parse(args, kwargs)):
                if origin is None:
                    self.process_actor.send(item)
                else:  # the MassTransit message's context goes with the item (its conversation, its fault)
                    self.process_actor.send_with_options(args=(item,), masstransit=origin)

        def record_failure(reason: str) -> None:
            _fault(ctx, inbox.actor_name, None, message, reason)

        item = args[0] if len(args) == 1 else None
        run_item(inbox.actor_name, item, work, self.retry_policy(ctx), record_failure if origin else None)


def _declare(
    pipeline: Pipeline, broker: Broker, actor_name: str, queue: str, run: Callable[..., None], **options: Any
) -> dramatiq.Actor:  # type: ignore[type-arg]
    """Actor ``actor_name`` on ``queue``: its messages end in success, a retry or
    :class:`FinalFailure` (dead-lettered with the reason)."""
    run.__name__ = run.__qualname__ = actor_name
    try:
        return dramatiq.actor(
            actor_name=actor_name, queue_name=queue, broker=broker, throws=(FinalFailure,), **options
        )(run)
    except ValueError as exc:
        raise RegistrationError(f"pipeline {pipeline.name!r}: {exc}") from None


def _accept_masstransit(
    broker: Broker, inbox: Inbox[Any], message_type: str, bind: Callable[[], bool] | None = None
) -> None:
    """The inbox's queue also takes ``message_type`` as MassTransit publishes it (its exchange
    bound to the queue, or, with ``bind`` false, unbound: what is in the queue is still read)."""
    from backlane.messaging.masstransit import MassTransitInbox

    accept = getattr(broker, "accept_masstransit", None)
    if accept is None or inbox.from_masstransit is None:
        return  # a stub broker in unit tests: no RabbitMQ topology to declare
    accept(MassTransitInbox(inbox.queue, inbox.actor_name, message_type, inbox.from_masstransit, bind=bind))


def _origin(message: Any) -> dict[str, Any] | None:
    """The MassTransit context the message came with (backlane.messaging.conversation), if any."""
    from backlane.messaging import conversation

    return conversation.of_message(message)


def _fault(ctx: Context[Any], consumer: str, item: Any, message: Any, reason: str) -> None:
    """A message that came from MassTransit failed for good: owe its publisher a Fault<T>. Runs
    after the row says failed; raising (database or broker down) has the failure written again."""
    origin = _origin(message)
    if origin is None:
        return
    import sys

    from backlane.core.options import FAILURES_OPTION
    from backlane.messaging.masstransit_faults import notify_failed

    failures = message.options.get(FAILURES_OPTION, 0)
    retries = failures if isinstance(failures, int) and not isinstance(failures, bool) else 0
    notify_failed(ctx.runtime, ctx.pipeline.name, item, origin, reason, sys.exc_info()[1], retries, consumer)


def _raiser(error: Exception):  # type: ignore[no-untyped-def]
    def work() -> None:
        raise error

    return work


class Registry:
    def __init__(self) -> None:
        self._pipelines: dict[str, Registered[Any]] = {}

    def register(self, pipeline: Pipeline[S], broker: Broker | None = None) -> Registered[S]:
        if pipeline.name in self._pipelines:
            raise RegistrationError(f"a pipeline named {pipeline.name!r} is already registered")
        if pipeline.fetch is None:
            raise RegistrationError(f"pipeline {pipeline.name!r} has neither a fetch nor a table to claim items from")
        broker = broker or get_runtime().broker
        name = pipeline.name

        def process(*args: Item, **kwargs: Item) -> None:
            self.get(name).process(*args, **kwargs)

        def receive(*args: Any, **kwargs: Any) -> None:
            self.get(name).receive(*args, **kwargs)

        options = pipeline.actor_options(get_runtime().config(pipeline)) if pipeline.actor_options else {}
        actor = _declare(
            pipeline, broker, f"process_{name}", pipeline.queue_name, process, priority=ITEM_PRIORITY, **options
        )
        registered = Registered(pipeline, actor)
        if pipeline.inbox is not None:
            inbox = pipeline.inbox
            registered.inbox_actor = _declare(pipeline, broker, inbox.actor_name, inbox.queue, receive)
            if inbox.masstransit_type is not None and inbox.from_masstransit is not None:
                config = get_runtime().config(pipeline)
                should_bind = inbox.masstransit_bind
                bind = None if should_bind is None else (lambda: should_bind(get_runtime().config(pipeline)))
                _accept_masstransit(broker, inbox, inbox.masstransit_type(config), bind)
        self._pipelines[name] = registered
        locations.remember(name, pipeline.process)
        return registered

    def unregister(self, name: str) -> None:
        """Forget pipeline ``name`` and take its actors off their broker: a test's own pipelines
        must not stay registered for the tests after it (see tests' ``registered`` fixture)."""
        registered = self._pipelines.pop(name, None)
        if registered is None:
            return
        locations.forget(name)
        for actor in (registered.process_actor, registered.discover_actor, registered.inbox_actor):
            if actor is not None:
                actor.broker.actors.pop(actor.actor_name, None)

    def get(self, name: str) -> Registered[Any]:
        try:
            return self._pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self._pipelines)) or "none"
            raise KeyError(f"no pipeline named {name!r} (registered: {known})") from None

    def __iter__(self) -> Iterator[Registered[Any]]:
        return iter(self._pipelines.values())

    def by_purpose(self, purpose: Purpose | None = None) -> list[Registered[Any]]:
        return [r for r in self if purpose is None or r.pipeline.purpose == purpose]


#: The process-wide registry that ``actors`` fills.
REGISTRY = Registry()


def register(pipeline: Pipeline[S]) -> Registered[S]:
    return REGISTRY.register(pipeline)
