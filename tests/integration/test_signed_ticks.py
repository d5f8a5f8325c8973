"""The clock keeps working with signed options, on the real broker.

periodiq's ticks carry ``scheduled_at``, an option a worker reads (PeriodiqMiddleware skips a
stale tick): the broker signs it in its enqueue path, so the discover queue runs the tick,
and the discover actor's per-item messages (enqueue_many) run on the work queue. A tick
without backlane's signature is dead-lettered, however fresh its ``scheduled_at``."""

from __future__ import annotations

import json
from typing import Any

import pendulum

from backlane.core.registry import REGISTRY
from backlane.core.ticks import OutageProofScheduler
from backlane.messaging.broker import DISCOVER_QUEUE
from devtools.sample import create_orders
from tests.integration.conftest import App
from tests.integration.test_forged_messages import dead_letters, publish, rows
from tests.waiting import wait_until


def clock_for(actors: list[Any]) -> OutageProofScheduler:
    """The clock's scheduler without its start-up (which makes the session's broker serve and
    checks the database of a clock process): only its sending of ticks is under test."""
    clock = object.__new__(OutageProofScheduler)
    clock.actors, clock._last, clock._sent, clock.now = actors, None, {}, pendulum.now
    return clock


def test_a_clock_tick_is_signed_and_runs_discover_which_places_the_due_order(app: App, worker: Any) -> None:
    [order] = create_orders(app.db, 1, app.clock.now())
    discover_orders = REGISTRY.get("orders").discover_actor
    assert discover_orders is not None, "the scheduler module declares the discover actors"

    clock_for([discover_orders]).send_actors([discover_orders], pendulum.now().replace(microsecond=0))

    wait_until(lambda: rows(app)[order][0] == "succeeded", timeout=30, what="the due order placed by the tick")
    assert dead_letters(app, DISCOVER_QUEUE) == [] and dead_letters(app, "orders") == []


def test_an_unsigned_tick_is_dead_lettered_and_discovers_nothing(app: App, worker: Any) -> None:
    [order] = create_orders(app.db, 1, app.clock.now())
    tick = {
        "queue_name": DISCOVER_QUEUE,
        "actor_name": "discover_orders",
        "args": [],
        "kwargs": {},
        "options": {"scheduled_at": str(pendulum.now().replace(microsecond=0))},
    }
    publish(app, [("", DISCOVER_QUEUE, json.dumps(tick).encode(), None)])

    [letter] = wait_until(lambda: dead_letters(app, DISCOVER_QUEUE), timeout=30, what="the tick's dead letter")
    assert letter["headers"].get("x-backlane-reason") == (
        "option scheduled_at is set only by backlane; this message is not signed by it"
    )
    assert rows(app)[order][0] == "pending"
    assert app.queue_counts("orders")[:2] == (0, 0), "discover published nothing"
