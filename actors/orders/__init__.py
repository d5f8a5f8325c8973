"""Orders: place every pending order at the order API exactly once, then follow it
until the API says it succeeded or failed.

Replaces the order-queue service (a one-minute poll) and the OrderCreated
consumer: the pipeline's inbox, where other services publish OrderCreated
(``orders_inbox``); an order it claims goes to the same per-order actor. The
order's ``request_id`` is the idempotency key, so a second delivery of the same
message can never place a second order. Orders whose message was lost (worker
killed, queue purged) are claimed again by discover when their lease ends.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

from dramatiq.middleware import CurrentMessage
from sqlalchemy import CursorResult, case, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from actors.orders.client import OrderApiClient
from actors.orders.models import ORDERS_DUE, Order, OrderStatus
from actors.orders.settings import OrdersSettings
from backlane import (
    Context,
    Inbox,
    ItemTable,
    MalformedMessage,
    NotReady,
    PermanentError,
    Pipeline,
    Purpose,
    UnknownItem,
    register,
    row_id,
)
from backlane.messaging import conversation, masstransit_send
from backlane.messaging.broker import DISCOVER_QUEUE
from contracts.orders import (
    ORDER_CREATED_ACTOR,
    ORDER_CREATED_QUEUE,
    OrderCreated,
    OrderCreatedByRequest,
    order_created_from_masstransit,
)

#: What the orders pipeline's functions get: ``ctx.config`` is its OrdersSettings.
OrdersContext = Context[OrdersSettings]

FINAL_REMOTE_STATUSES = {"succeeded": OrderStatus.SUCCEEDED, "failed": OrderStatus.FAILED}

#: The orders table: unsettled orders are due, oldest first; a failed order is settled with its
#: reason, and an operator's requeue takes it up where it left off (placed or not).
ORDER_ROWS = ItemTable(
    Order,
    due=ORDERS_DUE,
    order_by=(Order.created_at, Order.id),
    done=Order.status == OrderStatus.SUCCEEDED.value,
    failed=Order.status == OrderStatus.FAILED.value,
    fail=lambda reason, now: {"status": OrderStatus.FAILED.value, "failure_reason": reason, "settled_at": now},
    reopened={
        "status": case((Order.external_order_id.is_(None), OrderStatus.PENDING.value), else_=OrderStatus.PLACED.value),
        "failure_reason": None,
        "settled_at": None,
    },
    search=(Order.request_id, Order.external_order_id, Order.mt_conversation_id),
    reason=Order.failure_reason,
    # Only an order not yet placed can be cancelled here: one placed is the order API's to cancel.
    cancel=lambda why, now: {"status": OrderStatus.CANCELLED.value, "failure_reason": why, "settled_at": now},
    cancellable=Order.external_order_id.is_(None),
    cancelled=Order.status == OrderStatus.CANCELLED.value,
)


def fetch(ctx: OrdersContext, limit: int) -> list[int]:
    """Orders with work left: those of the recent window first (oldest first), then older ones."""
    window_start = ctx.clock.now() - timedelta(hours=ctx.config.recent_window_hours)
    return ORDER_ROWS.claim(ctx, limit, Order.created_at >= window_start, Order.created_at < window_start)


_clients: dict[int, tuple[OrdersSettings, OrderApiClient]] = {}


def _api(ctx: OrdersContext) -> OrderApiClient:
    """The order API's client, built once per settings (not per order)."""
    settings = ctx.config
    cached = _clients.get(id(settings))
    if cached is None or cached[0] is not settings:
        cached = _clients[id(settings)] = (settings, OrderApiClient(settings, ctx.pipeline.name))
    return cached[1]


def process(ctx: OrdersContext, item: Any) -> None:
    order_id = row_id(item, "order")
    config = ctx.config
    columns = (Order.request_id, Order.customer, Order.payload, Order.status, Order.external_order_id)
    order = ORDER_ROWS.load(ctx, order_id, *columns)
    if order is None:
        raise UnknownItem(f"order {order_id} does not exist")
    if not order.has_work:
        ctx.log.info("order %s is already %s; nothing to do", order_id, order.status)
        return

    api = _api(ctx)
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
        placed = ORDER_ROWS.update(
            ctx, order_id, status=OrderStatus.PLACED.value, lease_until=lease_until, **placed_now
        )
        if not placed and placed_now:
            _placed_while_cancelled(ctx, order_id, placed_now["external_order_id"])
            return
        raise NotReady(f"order {remote.external_id} is still pending", config.status_poll_seconds)
    settled = ORDER_ROWS.update(
        ctx,
        order_id,
        status=final.value,
        settled_at=ctx.clock.now(),
        failure_reason=None if final is OrderStatus.SUCCEEDED else "rejected by the order API",
        **placed_now,
    )
    if not settled and placed_now:
        _placed_while_cancelled(ctx, order_id, placed_now["external_order_id"])


def _placed_while_cancelled(ctx: OrdersContext, order_id: int, external_id: str) -> None:
    """An operator cancelled the order while this worker was placing it (the call was already
    on its way): keep the order API's id on the cancelled row and say so, loudly, for the
    order is placed there and only the order API can cancel it now."""
    with ctx.db.transaction() as session:
        session.execute(
            update(Order)
            .where(Order.id == order_id, Order.status == OrderStatus.CANCELLED.value)
            .values(external_order_id=external_id, updated_at=ctx.clock.now())
        )
    ctx.log.warning(
        "order %s was cancelled while it was being placed: it is placed at the order API as %s; cancel it there",
        order_id,
        external_id,
    )


def dispatch(ctx: OrdersContext, items: Sequence[Any]) -> Sequence[Any]:
    """Publish-only mode: each claimed order as ``OrderCreated(RequestId)`` for the .NET consumer
    (one confirmed batch), none left for the per-item actor; otherwise every order is placed here."""
    config = ctx.config
    if not config.publish_only or not items:
        return items
    with ctx.db.transaction() as session:
        request_ids = list(session.scalars(select(Order.request_id).where(Order.id.in_(items)).order_by(Order.id)))
    masstransit_send.publish(
        ctx.runtime.broker,
        config.order_created_message_type,
        [{"requestId": request_id} for request_id in request_ids],
        source_address=masstransit_send.address(DISCOVER_QUEUE),
        sent=ctx.clock.now(),
    )
    ctx.log.info("published OrderCreated for %d order(s) to %s", len(request_ids), config.order_created_message_type)
    return []


def parse_order_created(args: tuple[Any, ...], kwargs: dict[str, Any]) -> OrderCreated | OrderCreatedByRequest:
    """The inbox's wire format, in this one function: a Dramatiq message whose single
    positional argument is an OrderCreated, version 1 (row id) or 2 (request id, maybe with
    the order's content; what a MassTransit publisher's message becomes), see :mod:`contracts.orders`."""
    if len(args) != 1 or kwargs:
        raise MalformedMessage("OrderCreated must be the single positional argument of the message")
    if isinstance(args[0], dict) and args[0].get("version") == 2:
        return OrderCreatedByRequest.model_validate(args[0])
    return OrderCreated.model_validate(args[0])


def order_by_request(
    ctx: OrdersContext, event: OrderCreatedByRequest, envelope: dict[str, str]
) -> tuple[int | None, bool]:
    """The id of the order with the event's request id, and whether this message created it:
    with the order's content, the row is created when absent, keeping the message's
    MassTransit ids (one row per request id: a repeat, or a race, creates nothing)."""
    created = False
    with ctx.db.transaction() as session:
        if event.has_content:
            now = ctx.clock.now()
            dialect = session.get_bind().dialect.name
            insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
            row = {
                "request_id": event.request_id,
                "customer": event.customer,
                "payload": {"items": [item.model_dump() for item in event.items or ()]},
                "status": OrderStatus.PENDING.value,
                "created_at": now,
                "updated_at": now,
                **envelope,
            }
            statement = insert(Order).values(**row).on_conflict_do_nothing(index_elements=["request_id"])
            created = bool(cast(CursorResult[Any], session.execute(statement)).rowcount)
        found: int | None = session.scalar(select(Order.id).where(Order.request_id == event.request_id))
        return found, created


def envelope_ids() -> dict[str, str]:
    """The row's columns for the MassTransit ids of the OrderCreated being handled (GUIDs only;
    none for a message that was not MassTransit's)."""
    found = conversation.of_message(CurrentMessage.get_current_message())
    return {f"mt_{key}": value for key, value in conversation.envelope_ids(found).items()}


def accept_order_created(ctx: OrdersContext, event: OrderCreated | OrderCreatedByRequest) -> list[int]:
    """Hand the order to the per-order actor, once: only a claim sends it. A row not visible
    yet (its transaction not committed) is looked for again until the grace period ends. The
    MassTransit ids of the message that created or claimed the order are kept on its row."""
    config = ctx.config
    envelope, created = envelope_ids(), False
    if isinstance(event, OrderCreatedByRequest):
        order_id, created = order_by_request(ctx, event, envelope)
        named = f"with request id {event.request_id!r}"
    else:
        order_id, named = event.order_id, str(event.order_id)
    claimed = ORDER_ROWS.claim_one(ctx, order_id) if order_id is not None else None
    if claimed and order_id is not None:
        if envelope and not created:  # a row created by this message has them already; all three
            # are written, so a later message's ids never mix with an earlier one's
            ORDER_ROWS.update(
                ctx,
                order_id,
                mt_message_id=envelope.get("mt_message_id"),
                mt_conversation_id=envelope.get("mt_conversation_id"),
                mt_correlation_id=envelope.get("mt_correlation_id"),
            )
        return [order_id]
    if claimed is not None:
        ctx.log.info("order %s is settled or already in flight; OrderCreated ignored", named)
        return []
    message = CurrentMessage.get_current_message()
    first_seen_ms = message.message_timestamp if message is not None else time.time() * 1000
    waited = time.time() - first_seen_ms / 1000
    if waited < config.created_grace_seconds:
        raise NotReady(f"order {named} not visible yet", config.created_recheck_seconds)
    raise UnknownItem(f"order {named} does not exist (waited {waited:.0f}s for it to appear)")


ORDERS = register(
    Pipeline(
        name="orders",
        purpose=Purpose.EXPORT,
        config=OrdersSettings,
        table=ORDER_ROWS,
        fetch=fetch,
        process=process,
        inbox=Inbox(
            ORDER_CREATED_QUEUE,
            ORDER_CREATED_ACTOR,
            parse=parse_order_created,
            accept=accept_order_created,
            masstransit_type=lambda config: config.order_created_message_type,
            from_masstransit=order_created_from_masstransit,
            masstransit_bind=lambda config: not config.publish_only,
        ),
        dispatch=dispatch,
        description="place pending orders at the order API and follow them until settled",
    )
)
