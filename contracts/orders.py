"""OrderCreated: another service tells backlane an order row is ready to be placed.

On the wire it is the first positional argument of a Dramatiq message for the
actor ``order_created`` on the queue ``orders_inbox`` (default exchange, routing
key ``orders_inbox``). A publisher without Dramatiq writes the envelope by hand;
``message_id`` and ``message_timestamp`` may be left out. See README.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Where other services publish OrderCreated.
ORDER_CREATED_QUEUE = "orders_inbox"
ORDER_CREATED_ACTOR = "order_created"


class OrderCreated(BaseModel):
    """An order row was committed and should be placed at the order API."""

    model_config = ConfigDict(strict=True, extra="forbid", title="OrderCreated")

    version: Literal[1] = Field(description="Contract version; only 1 exists.")
    order_id: int = Field(gt=0, description="Primary key of the row in backlane's orders table.")
    occurred_at: datetime | None = Field(
        default=None, strict=False, description="When the order was created (ISO 8601), informational."
    )

    def envelope(self, message_id: str | None = None) -> dict[str, Any]:
        """The whole Dramatiq message body, as a foreign publisher would write it."""
        body: dict[str, Any] = {
            "queue_name": ORDER_CREATED_QUEUE,
            "actor_name": ORDER_CREATED_ACTOR,
            "args": [self.model_dump(mode="json", exclude_none=True)],
            "kwargs": {},
            "options": {},
        }
        if message_id:
            body["message_id"] = message_id
        return body
