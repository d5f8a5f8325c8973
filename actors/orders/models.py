"""The orders table: one row per order to place at the external order API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backlane import Base, BigId, literal_in


class OrderStatus(StrEnum):
    PENDING = "pending"  # not yet placed at the order API
    PLACED = "placed"  # placed; following its status at the API
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # by an operator before it was placed (backlane orders cancel)


#: Orders discover still has work for.
UNSETTLED_ORDER_STATUSES = (OrderStatus.PENDING.value, OrderStatus.PLACED.value)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: Sent to the order API as the idempotency key: one order per request id, ever.
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    customer: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.PENDING.value)
    external_order_id: Mapped[str | None] = mapped_column(String(100))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    #: Until then the order is in flight and discover leaves it alone.
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    settled_at: Mapped[datetime | None]
    #: The MassTransit ids (messageId, conversationId, correlationId) of the OrderCreated that
    #: created or claimed the order, so the dashboard shows where a .NET operator finds it; each
    #: kept only when it is a GUID (backlane.messaging.conversation.envelope_ids). None for an
    #: order discover claimed, or an OrderCreated that was not MassTransit's.
    mt_message_id: Mapped[str | None] = mapped_column(String(36))
    mt_conversation_id: Mapped[str | None] = mapped_column(String(36))
    mt_correlation_id: Mapped[str | None] = mapped_column(String(36))


#: The one definition of "an order with work left": ix_orders_due's predicate, and the
#: condition of every claim, status count and guarded write of the orders pipeline.
ORDERS_DUE = literal_in(Order.status, UNSETTLED_ORDER_STATUSES)
Index("ix_orders_due", Order.created_at, postgresql_where=ORDERS_DUE, sqlite_where=ORDERS_DUE)
#: The dashboard's lookups: an order page by status, newest first, and status counts (index
#: only); an order by the id the order API gave it, or by its MassTransit conversation.
Index("ix_orders_status_id", Order.status, Order.id)
Index("ix_orders_external_order_id", Order.external_order_id)
Index("ix_orders_mt_conversation_id", Order.mt_conversation_id)
