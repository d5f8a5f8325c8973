"""Wire formats only: pydantic models of the messages backlane consumes and publishes.

No I/O here. Every model has a JSON Schema (``backlane schemas`` writes them);
other services, in any language, publish against these.
"""

from pydantic import BaseModel

from contracts.catalog import CATALOG_EVENTS_EXCHANGE, CatalogSectionRefreshed
from contracts.orders import ORDER_CREATED_ACTOR, ORDER_CREATED_QUEUE, OrderCreated, OrderCreatedByRequest

#: Every message contract, by the name its JSON Schema is published under.
MESSAGE_CONTRACTS: dict[str, type[BaseModel]] = {
    "OrderCreated": OrderCreated,
    "OrderCreatedByRequest": OrderCreatedByRequest,
    "CatalogSectionRefreshed": CatalogSectionRefreshed,
}

__all__ = [
    "CATALOG_EVENTS_EXCHANGE",
    "MESSAGE_CONTRACTS",
    "ORDER_CREATED_ACTOR",
    "ORDER_CREATED_QUEUE",
    "CatalogSectionRefreshed",
    "OrderCreated",
    "OrderCreatedByRequest",
]
