"""Wire formats only: pydantic models of the messages backlane consumes and publishes.

No I/O here. Every model has a JSON Schema (``backlane schemas`` writes them);
other services, in any language, publish against these.
"""

from contracts.orders import ORDER_CREATED_ACTOR, ORDER_CREATED_QUEUE, OrderCreated

#: Every message contract, by the name its JSON Schema is published under.
MESSAGE_CONTRACTS = {"OrderCreated": OrderCreated}

__all__ = ["MESSAGE_CONTRACTS", "ORDER_CREATED_ACTOR", "ORDER_CREATED_QUEUE", "OrderCreated"]
