"""Simulated product API (service "products"): a health endpoint and paged products.

The product list is stable and deterministic (product ``i`` is always the same,
its size is the ``product_count`` knob), so two exports of it are byte-for-byte
equal and a resumed export can be compared with an uninterrupted one. Some names
carry commas, quotes and non-ASCII letters to exercise CSV quoting. The
``product_fail_page`` knob fails one page a few times, which interrupts an
export in the middle; stats count requests per page to prove where it resumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from devtools.simulator.server import HttpError, Reply, register_route
from devtools.simulator.state import SimulatorState, register_service_state

#: Largest page a client may ask for.
MAX_PAGE_SIZE = 1000
_CATEGORIES = ("audio", "video", "books", "games", "garden")


def product(index: int) -> dict[str, Any]:
    """Product number ``index`` (1-based), always the same."""
    name = f"Product {index}"
    if index % 17 == 0:
        name += ', "special" édition'
    return {
        "id": index,
        "sku": f"SKU-{index:06d}",
        "name": name,
        "category": _CATEGORIES[index % len(_CATEGORIES)],
        "price": f"{(index * 7919) % 10_000 / 100:.2f}",
        "stock": (index * 31) % 500,
    }


@dataclass
class ProductsState:
    """Requests per page number and injected failures, published in stats["products"]."""

    page_requests: dict[int, int] = field(default_factory=dict)
    failures_served: int = 0
    health_checks: int = 0

    def stats(self) -> dict[str, Any]:
        return {
            "page_requests": {str(page): n for page, n in sorted(self.page_requests.items())},
            "failures_served": self.failures_served,
            "health_checks": self.health_checks,
        }


register_service_state("products", ProductsState)


def _positive(query: dict[str, str], name: str, default: int, high: int | None = None) -> int:
    raw = query.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, {"error": f"{name} must be an integer, got {raw!r}"}) from None
    if value < 1 or (high is not None and value > high):
        raise HttpError(400, {"error": f"{name} must be within [1, {high or 'inf'}]"})
    return value


def list_products(
    state: SimulatorState, match: re.Match[str], body: bytes, headers: Any, query: dict[str, str]
) -> Reply:
    """GET /products?page=N&page_size=M: one page, with ``has_next`` and ``total``."""
    page = _positive(query, "page", 1)
    size = _positive(query, "page_size", 100, MAX_PAGE_SIZE)
    with state.lock:
        store: ProductsState = state.service("products")
        store.page_requests[page] = store.page_requests.get(page, 0) + 1
        cfg = state.config
        if cfg.product_fail_page == page and store.failures_served < cfg.product_fail_times:
            store.failures_served += 1
            return 503, {"error": "transient", "message": f"page {page} failed on purpose"}, {}
        total = cfg.product_count
    start = (page - 1) * size
    items = [product(i) for i in range(start + 1, min(start + size, total) + 1)]
    return 200, {"page": page, "page_size": size, "total": total, "has_next": start + size < total, "items": items}, {}


def health(state: SimulatorState, match: re.Match[str], body: bytes, headers: Any, query: dict[str, str]) -> Reply:
    """GET /health: 200 while the service is up (an outage answers 503 at the gate)."""
    with state.lock:
        state.service("products").health_checks += 1
    return 200, {"status": "ok"}, {}


register_route("GET", r"/products", "products", None, list_products, name="products.page")
register_route("GET", r"/health", "products", None, health, name="products.health")
