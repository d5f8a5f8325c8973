"""Typed tables. The row is the source of truth; messages carry only its id.

Times are stored as UTC. Every table a discover actor claims from has a
``lease_until`` column and a partial index matching its due condition, declared
beside the table so the claim query in :mod:`backlane.db.claims` stays O(batch).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Integer primary keys: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class OrderStatus(StrEnum):
    PENDING = "pending"  # not yet placed at the order API
    PLACED = "placed"  # placed; following its status at the API
    SUCCEEDED = "succeeded"
    FAILED = "failed"


#: Orders discover still has work for.
UNSETTLED_ORDER_STATUSES = (OrderStatus.PENDING.value, OrderStatus.PLACED.value)
_UNSETTLED_SQL = "status IN ('pending', 'placed')"


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

    __table_args__ = (
        Index(
            "ix_orders_due",
            "created_at",
            postgresql_where=text(_UNSETTLED_SQL),
            sqlite_where=text(_UNSETTLED_SQL),
        ),
    )
