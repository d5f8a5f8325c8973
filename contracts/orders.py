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


#: MassTransit's name of OrderCreated on the platform: ``Namespace:TypeName`` of the C# record
#: (its URN is ``urn:message:SharedContracts:OrderCreated``; its exchange has this name).
ORDER_CREATED_MESSAGE_TYPE = "SharedContracts:OrderCreated"


class OrderItem(BaseModel):
    """One line of an order sent with its content."""

    model_config = ConfigDict(strict=True, extra="forbid", title="OrderItem")

    sku: str = Field(min_length=1, max_length=100)
    quantity: int = Field(gt=0)


class OrderCreatedByRequest(BaseModel):
    """Version 2: the order named by its request id (the idempotency key), optionally with its
    content, for a publisher that does not share backlane's database. With ``customer`` and
    ``items`` backlane creates the row when no row has this request id (a repeat creates
    nothing); without them the row must exist (or appear within the grace period).

    What a MassTransit publisher's ``OrderCreated`` (``requestId``, ``customer``, ``items``;
    any other field ignored) becomes: see :func:`order_created_from_masstransit`."""

    model_config = ConfigDict(strict=True, extra="forbid", title="OrderCreatedByRequest")

    version: Literal[2] = Field(description="Contract version 2: the order named by its request id.")
    request_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[\x21-\x7e]+$",
        description="The order's request id (its idempotency key at the order API): printable ASCII, no spaces.",
    )
    customer: str | None = Field(
        default=None, min_length=1, max_length=200, description="With items: create the row if absent."
    )
    items: list[OrderItem] | None = Field(default=None, description="With customer: create the row if absent.")
    occurred_at: datetime | None = Field(
        default=None, strict=False, description="When the order was created (ISO 8601), informational."
    )

    @property
    def has_content(self) -> bool:
        return self.customer is not None and self.items is not None


#: What a decoded JSON value is called in a reason (not Python's type names).
_JSON_NAMES = {
    type(None): "null",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "an array",
}


def order_created_from_masstransit(message: Any) -> dict[str, Any]:
    """The ``message`` of a MassTransit ``OrderCreated`` as an OrderCreated version 2 argument.

    Property names match case-insensitively (MassTransit's System.Text.Json options) and
    unknown properties are ignored, as a MassTransit consumer does. Raises ValueError with a
    reason a person understands."""
    if not isinstance(message, dict):
        raise ValueError(
            f"the OrderCreated message must be a JSON object, got {_JSON_NAMES.get(type(message), 'another value')}"
        )
    fields = {key.lower(): value for key, value in message.items() if isinstance(key, str)}
    if fields.get("requestid") is None:
        raise ValueError("the OrderCreated message has no RequestId (expected a property named requestId)")
    argument: dict[str, Any] = {"version": 2, "request_id": fields["requestid"]}
    for name in ("customer", "items"):
        if fields.get(name) is not None:
            argument[name] = fields[name]
    if isinstance(argument.get("items"), list):
        argument["items"] = [
            {key.lower(): value for key, value in item.items() if key.lower() in ("sku", "quantity")}
            if isinstance(item, dict)
            else item
            for item in argument["items"]
        ]
    return argument
