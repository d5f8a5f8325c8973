"""Simulated vendor scrapers (service "vendors"): POST /vendors/{vendor}/scrape.

Each staging batch is handed to its vendor's scraper. The simulator counts, per
vendor, the calls and the distinct batches scraped (by Idempotency-Key), so tests
can prove each registration of the staging handler served only its own vendor,
and never scraped a batch twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from devtools.simulator.server import HttpError, Reply, json_object, register_route
from devtools.simulator.state import SimulatorState, register_service_state


@dataclass
class VendorStats:
    calls: int = 0
    replays: int = 0
    rejected: int = 0
    keys: set[str] = field(default_factory=set)

    def snapshot(self) -> dict[str, Any]:
        return {"calls": self.calls, "scraped": len(self.keys), "replays": self.replays, "rejected": self.rejected}


@dataclass
class VendorsState:
    vendors: dict[str, VendorStats] = field(default_factory=dict)

    def stats(self) -> dict[str, Any]:
        return {name: vendor.snapshot() for name, vendor in sorted(self.vendors.items())}


register_service_state("vendors", VendorsState)


def scrape(state: SimulatorState, match: re.Match[str], body: bytes, headers: Any, query: dict[str, str]) -> Reply:
    """Scrape the batch's URLs; a batch without URLs is a client error (422) with a reason."""
    vendor = match.group("vendor")
    key = headers.get("Idempotency-Key")
    if not key:
        raise HttpError(400, {"error": "missing Idempotency-Key"})
    parsed = json_object(body)
    urls = parsed.get("urls")
    with state.lock:
        store: VendorsState = state.service("vendors")
        stats = store.vendors.setdefault(vendor, VendorStats())
        stats.calls += 1
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            stats.rejected += 1
            return 422, {"error": "a scrape batch needs a non-empty list of urls"}, {}
        if key in stats.keys:
            stats.replays += 1
        stats.keys.add(key)
    return 200, {"vendor": vendor, "records": len(urls)}, {}


register_route("POST", r"/vendors/(?P<vendor>[A-Za-z0-9_-]+)/scrape", "vendors", None, scrape, name="vendors.scrape")
