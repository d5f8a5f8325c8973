"""The orders pipeline's settings: ``BACKLANE_ORDERS__*``, its order API's included."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pydantic import Field

from backlane import TableSettings
from backlane.settings import ApiSettings

#: The order API's variables before they moved into the orders section, still read.
FORMER_VARIABLES = {"base_url": "ORDER_API__BASE_URL", "api_key": "ORDER_API__API_KEY", "timeout": "ORDER_API__TIMEOUT"}


class OrdersSettings(TableSettings, ApiSettings):
    """The orders pipeline, and its order API (``POST /orders``, ``GET /orders/{id}``):
    ``BACKLANE_ORDERS__BASE_URL``, ``__API_KEY``, ``__TIMEOUT`` (formerly ``BACKLANE_ORDER_API__*``)."""

    #: Every minute, as the order-queue service did.
    tick: str = "* * * * *"
    #: Orders created within this window are claimed first, hours.
    recent_window_hours: float = Field(default=24.0, gt=0)
    #: Wait between two status checks of a placed order, seconds.
    status_poll_seconds: float = Field(default=5.0, gt=0)
    #: An OrderCreated whose row is not visible yet is retried this long, seconds.
    created_grace_seconds: float = Field(default=60.0, gt=0)
    #: Delay between two looks for a not-yet-visible order, seconds.
    created_recheck_seconds: float = Field(default=2.0, gt=0)
    #: MassTransit publishers' OrderCreated: its namespace and type name. Their exchange
    #: (``Namespace:TypeName``, fanout, durable) is declared and bound to ``orders_inbox``.
    order_created_namespace: str = Field(default="SharedContracts", min_length=1, pattern=r"^[A-Za-z_][\w.]*$")
    order_created_type_name: str = Field(default="OrderCreated", min_length=1, pattern=r"^[A-Za-z_][\w`]*$")
    #: Publish-only (the first migration step, docs/masstransit-faults.md#publish-only): discover
    #: publishes ``OrderCreated(RequestId)`` in MassTransit's envelope to that exchange for each
    #: order it claims, instead of placing it; the platform's .NET consumer places it and settles
    #: the row, and an order still unsettled when its lease ends is published again. The exchange
    #: is then not bound to ``orders_inbox`` (a binding from an earlier run is removed).
    publish_only: bool = False

    env_aliases: ClassVar[Mapping[str, str]] = FORMER_VARIABLES

    @property
    def order_created_message_type(self) -> str:
        return f"{self.order_created_namespace}:{self.order_created_type_name}"
