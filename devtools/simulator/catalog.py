"""Simulated catalog sources: the catalog provider (categories; brands with products,
prices and category links) and the ERP, e-shop and logistics sources of the other
sections.

Every section answers ``GET <path>`` with ``{"items": [...]}``. Its data is
deterministic (the same on every start; history dates count back from today)
and tests change it through ``POST /_admin/catalog/{section}`` with
``{"items": [...]}`` (replace), ``{"upsert": [...]}`` (by id), ``{"remove": [ids]}``
or ``{"reset": true}``; ``GET /_admin/catalog/{section}`` shows it. Each source
is a service for the ``outage`` knob (``catalog``, ``erp``, ``eshop``,
``logistics``) and a rate-limit key of the same name, except the provider's categories
endpoint, limited on its own (key ``categories``): ``rate_limits={"catalog": [2, 3600]}``
is the provider's real limit on its catalog endpoint (brands), answered with 429 "wait
for X seconds".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.simulator.server import HttpError, Reply, json_object, register_admin_route, register_route
from devtools.simulator.state import SimulatorState, register_service_state

#: section -> (source, path); the same table as actors.catalog.sections, seen from the server.
SECTION_ROUTES: dict[str, tuple[str, str]] = {
    "categories": ("catalog", "/catalog/categories"),
    "brands": ("catalog", "/catalog/brands"),
    "erp_stock": ("erp", "/erp/stock"),
    "purchase_history": ("erp", "/erp/purchase-history"),
    "consumed_materials": ("erp", "/erp/consumed-materials"),
    "lots": ("erp", "/erp/lots"),
    "stock_taking": ("erp", "/erp/stock-taking"),
    "suppliers": ("erp", "/erp/suppliers"),
    "attributes": ("erp", "/erp/attributes"),
    "eshop_stock": ("eshop", "/eshop/stock"),
    "sales": ("eshop", "/eshop/sales"),
    "transport": ("logistics", "/logistics/transport"),
}
HISTORY = ("sales", "purchase_history", "consumed_materials")


def _day(days_ago: int) -> str:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=days_ago)).isoformat()


def default_items(section: str) -> list[dict[str, Any]]:
    """The section's starting data: small, stable, with every relationship exercised."""
    if section == "categories":
        return [
            {"id": f"cat-{i}", "name": f"Category {i}", "parent_id": f"cat-{i // 5}" if i >= 5 else None}
            for i in range(20)
        ]
    if section == "brands":
        return [
            {
                "id": f"brand-{b}",
                "name": f"Brand {b}",
                "categories": sorted({f"cat-{(b * 3) % 20}", f"cat-{(b * 7 + 1) % 20}"}),
                "products": [
                    {
                        "id": f"prod-{b}-{p}",
                        "name": f"Product {b}.{p}",
                        "sku": f"SKU-{b:02d}{p:02d}",
                        "prices": [
                            {"currency": "EUR", "amount": f"{(b * 13 + p * 7) % 90 + 9}.99"},
                            {"currency": "CZK", "amount": f"{((b * 13 + p * 7) % 90 + 9) * 25}.00"},
                        ],
                    }
                    for p in range(5)
                ],
            }
            for b in range(10)
        ]
    if section in HISTORY:  # one row every 10 days, back past the longest retention
        return [{"id": f"{section}-{i}", "occurred_at": _day(i * 10), "quantity": i % 7 + 1} for i in range(80)]
    return [{"id": f"{section}-{i}", "value": (i * 37) % 101, "label": f"{section} {i}"} for i in range(30)]


@dataclass
class CatalogState:
    """Per-section data (created lazily from the defaults) and how often each was served."""

    data: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)

    def items(self, section: str) -> list[dict[str, Any]]:
        if section not in self.data:
            self.data[section] = default_items(section)
        return self.data[section]

    def stats(self) -> dict[str, Any]:
        return {"served": dict(self.served), "sizes": {name: len(items) for name, items in self.data.items()}}


register_service_state("catalog", CatalogState)


def _serve(section: str):  # type: ignore[no-untyped-def]
    def serve(state: SimulatorState, match: re.Match[str], body: bytes, headers: Any, query: dict[str, str]) -> Reply:
        with state.lock:
            store: CatalogState = state.service("catalog")
            store.served[section] = store.served.get(section, 0) + 1
            return 200, {"items": list(store.items(section))}, {}

    return serve


def _known(section: str) -> str:
    if section not in SECTION_ROUTES:
        raise HttpError(404, {"error": f"unknown section {section!r}", "known": sorted(SECTION_ROUTES)})
    return section


def admin_show(state: SimulatorState, match: re.Match[str], body: bytes) -> Reply:
    section = _known(match.group("section"))
    with state.lock:
        return 200, {"items": list(state.service("catalog").items(section))}, {}


def admin_change(state: SimulatorState, match: re.Match[str], body: bytes) -> Reply:
    """Replace, upsert into, remove from, or reset one section's data."""
    section = _known(match.group("section"))
    change = json_object(body)
    with state.lock:
        store: CatalogState = state.service("catalog")
        if change.get("reset"):
            store.data[section] = default_items(section)
        if "items" in change:
            store.data[section] = _checked(change["items"])
        if "upsert" in change:
            by_id = {item["id"]: item for item in store.items(section)}
            by_id.update({item["id"]: item for item in _checked(change["upsert"])})
            store.data[section] = list(by_id.values())
        if "remove" in change:
            gone = set(change["remove"])
            store.data[section] = [item for item in store.items(section) if item["id"] not in gone]
        return 200, {"section": section, "size": len(store.items(section))}, {}


def _checked(items: Any) -> list[dict[str, Any]]:
    if not isinstance(items, list) or not all(isinstance(i, dict) and "id" in i for i in items):
        raise HttpError(400, {"error": "items must be a list of objects with an id"})
    return items


#: The provider's rate-limit keys as it names its endpoints: categories has a limiter of its own,
#: brands count against ``catalog``; every other section against its source's key.
RATE_KEYS: dict[str, str] = {"categories": "categories"}

for _section, (_source, _path) in SECTION_ROUTES.items():
    _key = RATE_KEYS.get(_section, _source)
    register_route("GET", re.escape(_path), _source, _key, _serve(_section), name=f"{_source}.{_section}")
register_admin_route("GET", r"/_admin/catalog/(?P<section>[a-z_]+)", admin_show)
register_admin_route("POST", r"/_admin/catalog/(?P<section>[a-z_]+)", admin_change)
