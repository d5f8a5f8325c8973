"""Catalog in the demo: all 12 sections refreshed from the sources simulator, at most 3 at once
and within the catalog provider's real limit of 2 requests an hour (the simulator enforces it too).
The demo asks for the next refreshes as slots free up instead of waiting a minute per round.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from sqlalchemy import select

from actors.catalog.models import CatalogSection  # this pipeline's model: imported here only
from actors.catalog.sections import SECTIONS
from backlane.core.clock import as_utc
from devtools.demo.part import DemoContext, DemoPart, Failure, Outcome, PartResult, SimulatorUse, now

#: The simulator standing in for the catalog provider (and the demo's other sources).
SIMULATOR = "sources"
#: The catalog provider's real limit, enforced by the simulator too.
PROVIDER_LIMIT = "catalog=2/3600"
#: Sections refreshed at once (BACKLANE_CATALOG__MAX_CONCURRENT's default).
AT_ONCE = 3
#: Seconds between two discovers the demo asks for while slots are free.
NUDGE_EVERY = 2.0


class CatalogPart(DemoPart):
    """Every catalog section, refreshed from the simulated provider and sources."""

    def __init__(self, name: str, registered: Any) -> None:
        super().__init__(name, registered)
        self.counts = {"ok": 0, "running": 0, "failed": 0, "waiting": 0}
        self.last_nudge = time.monotonic()
        self.explained = False

    def simulator(self) -> SimulatorUse:
        return SimulatorUse(
            SIMULATOR,
            ("--rate-limit", PROVIDER_LIMIT),
            "the catalog provider (2 requests an hour), the ERP, e-shop and logistics sources",
        )

    def environment(self, ctx: DemoContext) -> dict[str, str]:
        return {"BACKLANE_CATALOG__BASE_URL": ctx.simulator_url(SIMULATOR)}

    def seed(self, ctx: DemoContext) -> str:
        return f"{len(SECTIONS)} catalog sections to refresh"  # their rows: made by the first discover

    def start(self, ctx: DemoContext) -> tuple[str, ...]:
        self.last_nudge = time.monotonic()  # its first discover is asked for now: nudge from here on
        return ()

    def look(self, ctx: DemoContext) -> PartResult:
        at = now()

        def leased(value: Any) -> bool:
            return value is not None and as_utc(value) > at

        with ctx.db.transaction() as session:
            sections = list(session.scalars(select(CatalogSection)))
        never = [s for s in sections if s.last_success_at is None]
        self.counts = {
            "ok": len(sections) - len(never),
            "running": sum(1 for s in sections if leased(s.lease_until)),
            "failed": sum(1 for s in never if s.last_outcome == "failed"),
            "waiting": sum(1 for s in never if leased(s.hold_until)),
        }
        c = self.counts
        line = f"{c['ok']:>2}/{len(SECTIONS)} sections refreshed, {c['running']} refreshing" + (
            f", {c['failed']} failed" if c["failed"] else ""
        )
        return PartResult((line,), c["ok"] + c["failed"] >= len(SECTIONS))

    def nudge(self, ctx: DemoContext) -> tuple[str, ...]:
        """A refresh slot is free and sections are due: ask for a discover now, as
        ``backlane trigger catalog`` would, instead of waiting a minute per round."""
        c = self.counts
        due = len(SECTIONS) - c["ok"]
        free = c["running"] < AT_ONCE and due > c["running"] + c["waiting"] + c["failed"]
        if not free or time.monotonic() - self.last_nudge <= NUDGE_EVERY:
            return ()
        ctx.trigger(self.pipelines)
        self.last_nudge = time.monotonic()
        if self.explained:
            return ()
        self.explained = True
        return (
            f"catalog refreshes {AT_ONCE} sections at a time (BACKLANE_CATALOG__MAX_CONCURRENT); the demo "
            "asks for the next ones as slots free up (`backlane trigger catalog`)",
        )

    def outcome(self, ctx: DemoContext) -> Outcome:
        sources: dict[str, Any] = httpx.get(f"{ctx.simulator_url(SIMULATOR)}/_admin/stats", timeout=5).json()
        with ctx.db.transaction() as session:
            sections = list(session.scalars(select(CatalogSection)))
        ok = sum(1 for s in sections if s.last_success_at is not None)
        rows_in = sum((s.last_counts or {}).get("inserted", 0) for s in sections)
        provider_calls = sum(n for key, n in sources["requests"].items() if key.startswith("catalog."))
        line = (
            f"{ok}/{len(SECTIONS)} sections refreshed from the simulator ({rows_in} rows written), "
            f"at most {AT_ONCE} at once; the catalog provider answered {provider_calls} call(s) of its 2 an hour, "
            f"rate-limited {sum(sources['rate_limited'].values())}"
        )
        missing = len(SECTIONS) - ok
        return Outcome((line,), (f"{missing} catalog sections not refreshed",) if missing > 0 else ())

    def failures(self, ctx: DemoContext) -> list[Failure]:
        queue = self.queue(self.pipelines[0])
        with ctx.db.transaction() as session:
            rows = session.execute(
                select(CatalogSection.name, CatalogSection.last_error).where(CatalogSection.last_outcome == "failed")
            ).all()
        return [Failure(queue, f"section {name}", reason) for name, reason in rows]


PART = CatalogPart
