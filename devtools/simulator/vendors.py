"""Simulated vendor scrapers (service "vendors"): POST /vendors/{vendor}/scrape.

Each staging batch is handed to its vendor's scraper. The simulator counts, per
vendor, the calls and the distinct batches scraped (by Idempotency-Key), so tests
can prove each registration of the staging handler served only its own vendor,
and never scraped a batch twice.

The Idempotency-Key is honoured as a real API does: a repeated key scrapes
nothing again and gets the first answer back (header ``Idempotent-Replayed: true``);
``replays`` counts those calls and ``duplicates`` the keys called more than once
(a worker that called after its lease was re-claimed shows there).
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
    #: The first answer to each key, given again to a repeat; and how many calls each key had.
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "scraped": len(self.keys),
            "replays": self.replays,
            "duplicates": sum(1 for count in self.by_key.values() if count > 1),
            "rejected": self.rejected,
        }


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
        stats.by_key[key] = stats.by_key.get(key, 0) + 1
        if key in stats.answers:
            stats.replays += 1
            return 200, stats.answers[key], {"Idempotent-Replayed": "true"}
        stats.keys.add(key)
        answer = {"vendor": vendor, "records": len(urls)}
        stats.answers[key] = answer
    return 200, answer, {}


register_route("POST", r"/vendors/(?P<vendor>[A-Za-z0-9_-]+)/scrape", "vendors", None, scrape, name="vendors.scrape")
