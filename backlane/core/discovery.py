"""Discover: claim due items and publish one message each, in one confirmed batch.

A discover actor does the thinking a clock must not: it asks the pipeline's
``fetch`` for due items (which leases them), cuts the answer to the pipeline's
limit with a warning, and publishes one per-item message per item, waiting for
RabbitMQ's confirms once for the whole batch. A second clock is harmless: a
second tick finds the rows already leased.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import dramatiq
from dramatiq.broker import Broker
from periodiq import cron

from backlane.core.registry import Registered, Registry
from backlane.messaging.broker import DISCOVER_QUEUE
from backlane.operations import metrics

logger = logging.getLogger("backlane.discover")


@dataclass(frozen=True)
class TickResult:
    pipeline: str
    enqueued: int
    cut: int
    duration_s: float


def discover(registered: Registered) -> TickResult:
    ctx = registered.context()
    config = ctx.config
    started = time.monotonic()
    if not config.enabled:
        logger.info("pipeline %s is disabled; discover does nothing", registered.name)
        return TickResult(registered.name, 0, 0, 0.0)
    pause = ctx.paused()
    if pause is not None:
        logger.info("pipeline %s is paused by %s; discover does nothing", registered.name, pause.paused_by)
        return TickResult(registered.name, 0, 0, 0.0)
    limit = config.max_items
    fetch = registered.pipeline.fetch
    assert fetch is not None  # the registry refuses a pipeline without one
    items = list(fetch(ctx, limit))
    cut = max(0, len(items) - limit)
    if cut:
        logger.warning(
            "pipeline %s: fetch returned %d items for a limit of %d; %d cut off until a later tick",
            registered.name,
            len(items),
            limit,
            cut,
        )
        items = items[:limit]
    if registered.pipeline.dispatch is not None:
        items = list(registered.pipeline.dispatch(ctx, items))
    actor = registered.process_actor
    ctx.runtime.broker.enqueue_many([actor.message(item) for item in items])
    result = TickResult(registered.name, len(items), cut, time.monotonic() - started)
    metrics.observe_tick(registered.name)
    logger.info(
        "discover %s: enqueued %d item(s) in %.1f ms", registered.name, result.enqueued, result.duration_s * 1000
    )
    return result


def declare_discover_actors(registry: Registry, broker: Broker | None = None) -> list[dramatiq.Actor]:  # type: ignore[type-arg]
    """One discover actor per pipeline on the ``discover`` queue, with its cron schedule."""
    actors = []
    for registered in registry:
        if registered.discover_actor is not None:
            actors.append(registered.discover_actor)
            continue
        config = registered.context().config

        def run(registered: Registered = registered) -> TickResult | None:
            """The tick; its result is what a middleware's ``after_process_message`` sees (tracing)."""
            try:
                return discover(registered)
            except Exception:
                # Nothing is lost: claimed rows come back when their lease ends, and
                # the next tick tries again, so a failed tick is not dead-lettered.
                logger.exception("discover %s failed; the next tick will try again", registered.name)
                return None

        name = f"discover_{registered.name}"
        run.__name__ = run.__qualname__ = name
        options = {"periodic": cron(config.tick)} if config.enabled else {}
        registered.discover_actor = dramatiq.actor(
            actor_name=name,
            queue_name=DISCOVER_QUEUE,
            broker=broker or registered.process_actor.broker,
            max_retries=0,
            **options,
        )(run)
        actors.append(registered.discover_actor)
    return actors
