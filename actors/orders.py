"""Orders: place every pending order at the order API exactly once, then follow it
until the API says it succeeded or failed.

Replaces the order-queue service (a one-minute poll) and the OrderCreated
consumer. The order's ``request_id`` is the idempotency key, so a second delivery
of the same message can never place a second order. Orders whose message was
lost (worker killed, queue purged) are claimed again by discover when their lease
ends.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage
from pydantic import Field
from sqlalchemy import case, select, update

from backlane.clients.order_api import OrderApiClient
from backlane.core.pipeline import Context, Pipeline, Purpose
from backlane.core.processing import FinalFailure, run_item
from backlane.core.registry import register
from backlane.db.claims import ORDERS_DUE, claim_due_orders, claim_one, status_counts
from backlane.db.models import UNSETTLED_ORDER_STATUSES, Order, OrderStatus
from backlane.errors import MalformedMessage, NotReady, PermanentError, UnknownItem
from backlane.settings import PipelineSettings
from contracts.orders import ORDER_CREATED_ACTOR, ORDER_CREATED_QUEUE, OrderCreated


class OrdersSettings(PipelineSettings):
    #: Every minute, as the order-queue service did.
    tick: str = "* * * * *"
    #: Orders created within this window are claimed first, hours.
    recent_window_hours: float = Field(default=24.0, gt=0)
    #: A claimed order is not claimed again before this many seconds (its lease).
    lease_seconds: float = Field(default=600.0, gt=0)
    #: Wait between two status checks of a placed order, seconds.
    status_poll_seconds: float = Field(default=5.0, gt=0)
    #: An OrderCreated whose row is not visible yet is retried this long, seconds.
    created_grace_seconds: float = Field(default=60.0, gt=0)
    #: Delay between two looks for a not-yet-visible order, seconds.
    created_recheck_seconds: float = Field(default=2.0, gt=0)


FINAL_REMOTE_STATUSES = {"succeeded": OrderStatus.SUCCEEDED, "failed": OrderStatus.FAILED}


def fetch(ctx: Context, limit: int) -> list[int]:
    config: OrdersSettings = ctx.config
    with ctx.db.transaction() as session:
        return claim_due_orders(
            session,
            now=ctx.clock.now(),
            limit=limit,
            lease=timedelta(seconds=config.lease_seconds),
            recent_window=timedelta(hours=config.recent_window_hours),
        )


def _order_id(item: Any) -> int:
    if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
        raise MalformedMessage(f"an order item must be a positive integer id, got {item!r}")
    return item


def process(ctx: Context, item: Any) -> None:
    order_id = _order_id(item)
    config: OrdersSettings = ctx.config
    with ctx.db.connection() as connection:
        order = connection.execute(
            select(Order.request_id, Order.customer, Order.payload, Order.status, Order.external_order_id).where(
                Order.id == order_id
            )
        ).one_or_none()
    if order is None:
        raise UnknownItem(f"order {order_id} does not exist")
    if order.status not in UNSETTLED_ORDER_STATUSES:
        ctx.log.info("order %s is already %s; nothing to do", order_id, order.status)
        return

    api = OrderApiClient(ctx.settings.order_api)
    placed_now: dict[str, Any] = {}
    if order.external_order_id is None:
        # The request id is the idempotency key: placing again after a crash returns the same
        # order, so the external id needs no write of its own before we follow it.
        remote = api.place(order.request_id, {"customer": order.customer, **order.payload})
        placed_now = {"external_order_id": remote.external_id}
        if remote.status == "pending":
            remote = api.status(remote.external_id)
    else:
        remote = api.status(order.external_order_id)

    final = FINAL_REMOTE_STATUSES.get(remote.status)
    if final is None:
        if remote.status != "pending":
            raise PermanentError(f"order API reports unknown status {remote.status!r} for {remote.external_id}")
        lease_until = ctx.clock.now() + timedelta(seconds=config.status_poll_seconds + config.lease_seconds)
        _update(ctx, order_id, status=OrderStatus.PLACED.value, lease_until=lease_until, **placed_now)
        raise NotReady(f"order {remote.external_id} is still pending", config.status_poll_seconds)
    _update(
        ctx,
        order_id,
        status=final.value,
        settled_at=ctx.clock.now(),
        failure_reason=None if final is OrderStatus.SUCCEEDED else "rejected by the order API",
        **placed_now,
    )


def on_failure(ctx: Context, item: Any, reason: str) -> None:
    if isinstance(item, int):
        _update(ctx, item, status=OrderStatus.FAILED.value, failure_reason=reason, settled_at=ctx.clock.now())


def reopen(ctx: Context, item: Any) -> None:
    """A requeued dead letter: a failed order becomes workable again, where it left off."""
    order_id = _order_id(item)
    with ctx.db.connection() as connection:
        connection.execute(
            update(Order)
            .where(Order.id == order_id, Order.status == OrderStatus.FAILED.value)
            .values(
                status=case(
                    (Order.external_order_id.is_(None), OrderStatus.PENDING.value), else_=OrderStatus.PLACED.value
                ),
                failure_reason=None,
                settled_at=None,
                updated_at=ctx.clock.now(),
            )
        )


def _update(ctx: Context, order_id: int, **values: Any) -> None:
    """Write to an unsettled order only: a settled order is never touched again."""
    with ctx.db.connection() as connection:
        connection.execute(
            update(Order).where(Order.id == order_id, ORDERS_DUE).values(updated_at=ctx.clock.now(), **values)
        )


def stats(ctx: Context) -> dict[str, int]:
    with ctx.db.transaction() as session:
        return status_counts(
            session,
            Order,
            due=ORDERS_DUE,
            now=ctx.clock.now(),
            done=Order.status == OrderStatus.SUCCEEDED.value,
            failed=Order.status == OrderStatus.FAILED.value,
        )


ORDERS = register(
    Pipeline(
        name="orders",
        purpose=Purpose.EXPORT,
        config=OrdersSettings,
        fetch=fetch,
        process=process,
        on_failure=on_failure,
        reopen=reopen,
        stats=stats,
        description="place pending orders at the order API and follow them until settled",
    )
)


def handle_order_created(payload: Any) -> None:
    """Validate an OrderCreated and hand its order to the per-order actor, once."""
    ctx = ORDERS.context()
    event = OrderCreated.model_validate(payload)
    config: OrdersSettings = ctx.config
    with ctx.db.transaction() as session:
        claimed = claim_one(
            session,
            Order,
            event.order_id,
            due=ORDERS_DUE,
            now=ctx.clock.now(),
            lease=timedelta(seconds=config.lease_seconds),
        )
        exists = claimed or session.get(Order, event.order_id) is not None
    if claimed:
        ORDERS.process_actor.send(event.order_id)
        return
    if exists:
        ctx.log.info("order %s is settled or already in flight; OrderCreated ignored", event.order_id)
        return
    message = CurrentMessage.get_current_message()
    first_seen_ms = message.message_timestamp if message is not None else time.time() * 1000
    waited = time.time() - first_seen_ms / 1000
    if waited < config.created_grace_seconds:
        raise NotReady(f"order {event.order_id} not visible yet", config.created_recheck_seconds)
    raise UnknownItem(f"order {event.order_id} does not exist (waited {waited:.0f}s for it to appear)")


def order_created(*args: Any, **kwargs: Any) -> None:
    ctx = ORDERS.context()

    def work() -> None:
        if len(args) != 1 or kwargs:
            raise MalformedMessage("OrderCreated must be the single positional argument of the message")
        handle_order_created(args[0])

    run_item(ORDER_CREATED_ACTOR, args[0] if len(args) == 1 else None, work, ORDERS.retry_policy(ctx))


order_created_actor = dramatiq.actor(
    actor_name=ORDER_CREATED_ACTOR,
    queue_name=ORDER_CREATED_QUEUE,
    broker=ORDERS.process_actor.broker,
    throws=(FinalFailure,),
)(order_created)
