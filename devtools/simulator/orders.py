"""Simulated external order API (service "orders").

POST /orders places an order under an Idempotency-Key; GET /orders/{id}
follows its status. The simulator counts, per key, how many orders were really
created and how many calls arrived, which is what tests assert on to prove a
client never produces a second side effect however often it retries.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from devtools.simulator.server import HttpError, Reply, json_object, register_route
from devtools.simulator.state import SimulatorState, register_service_state


@dataclass
class Order:
    """An external order. Its final status is decided at creation; it stays pending for
    `polls_left` more GETs (order_settle_polls at creation time)."""

    id: str
    body: str
    final_status: str
    polls_left: int
    status: str = "pending"


@dataclass
class OrdersState:
    """Orders by id and by idempotency key, plus the counters published in stats["orders"]."""

    orders: dict[str, Order] = field(default_factory=dict)
    by_key: dict[str, Order] = field(default_factory=dict)
    key_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    sequence: int = 0
    created: int = 0
    replays: int = 0
    lost_responses: int = 0

    def stats(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "replays": self.replays,
            "lost_responses": self.lost_responses,
            "by_key": {key: dict(entry) for key, entry in self.key_stats.items()},
        }


register_service_state("orders", OrdersState)


def create_order(
    state: SimulatorState, match: re.Match[str], body: bytes, headers: Any, query: dict[str, str]
) -> Reply:
    """Create once per Idempotency-Key; replay the same order for the same key and body.

    A lost response (lost_response_rate) happens after the side effect, as a
    dropped connection or a gateway 502 would, so only idempotency saves the client.
    """
    key = headers.get("Idempotency-Key")
    if not key:
        raise HttpError(400, {"error": "missing Idempotency-Key"})
    parsed = json_object(body)
    items = parsed.get("items")
    if not isinstance(items, list) or not items:
        # Validation, as a real order API does: a client error that no retry can fix.
        raise HttpError(422, {"error": "an order needs a non-empty list of items"})
    canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":"))
    with state.lock:
        store: OrdersState = state.service("orders")
        entry = store.key_stats.setdefault(key, {"id": None, "creations": 0, "calls": 0})
        entry["calls"] += 1
        order = store.by_key.get(key)
        if order is None:
            cfg = state.config
            store.sequence += 1
            final = "failed" if state.chance(cfg.order_reject_rate) else "succeeded"
            order = Order(f"ext-{store.sequence}", canonical, final, cfg.order_settle_polls)
            store.orders[order.id] = order
            store.by_key[key] = order
            store.created += 1
            entry["id"] = order.id
            entry["creations"] += 1
            status = 201
        elif order.body != canonical:
            return 422, {"error": "idempotency key reused with a different body"}, {}
        else:
            store.replays += 1
            status = 200
        if state.chance(state.config.lost_response_rate):
            store.lost_responses += 1
            return 502, {"error": "response lost"}, {}
        return status, {"id": order.id, "status": order.status}, {}


def get_order(state: SimulatorState, match: re.Match[str], body: bytes, headers: Any, query: dict[str, str]) -> Reply:
    """Each GET while pending uses up one settle poll; after that the final status shows."""
    with state.lock:
        store: OrdersState = state.service("orders")
        order = store.orders.get(match.group("id"))
        if order is None:
            return 404, {"error": "order not found"}, {}
        if order.status == "pending":
            if order.polls_left > 0:
                order.polls_left -= 1
            else:
                order.status = order.final_status
        return 200, {"id": order.id, "status": order.status}, {}


register_route("POST", r"/orders", "orders", "orders.create", create_order)
register_route("GET", r"/orders/(?P<id>[^/]+)", "orders", "orders.status", get_order)
