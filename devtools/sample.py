"""Sample orders for the demo, tests and benchmarks."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert

from backlane.db.engine import Database
from backlane.db.models import Order, OrderStatus


def order_rows(
    count: int, now: datetime, *, spread: timedelta = timedelta(hours=48), **overrides: Any
) -> list[dict[str, Any]]:
    step = spread / max(count, 1)
    return [
        {
            "request_id": str(uuid.uuid4()),
            "customer": f"customer-{i % 97}",
            "payload": {"items": [{"sku": f"SKU-{i % 13}", "quantity": 1 + i % 3}]},
            "status": OrderStatus.PENDING.value,
            "created_at": now - step * i,
            "updated_at": now,
            **overrides,
        }
        for i in range(count)
    ]


def create_orders(db: Database, count: int, now: datetime, *, batch: int = 5000, **overrides: Any) -> list[int]:
    """Insert ``count`` pending orders spread over the last 48 hours; returns their ids."""
    ids: list[int] = []
    rows = order_rows(count, now, **overrides)
    for start in range(0, len(rows), batch):
        with db.transaction() as session:
            result = session.execute(insert(Order).returning(Order.id), rows[start : start + batch])
            ids.extend(result.scalars())
    return ids
