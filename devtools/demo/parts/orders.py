"""Orders in the demo: half announced the way another service would (a raw OrderCreated on
``orders_inbox``), the rest found by the discover tick; then a check at the order API simulator
that each order was placed exactly once, however many of its calls failed or lost their answer.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import func, select

from actors.orders.models import Order  # this pipeline's model: imported here only
from backlane.core.clock import as_utc
from contracts.orders import ORDER_CREATED_QUEUE, OrderCreated
from devtools.demo.options import share, whole
from devtools.demo.part import (
    DemoContext,
    DemoPart,
    Failure,
    Outcome,
    PartResult,
    SimulatorUse,
    Wait,
    next_tick_in,
    now,
)
from devtools.sample import create_orders
from devtools.simulator.identity import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

#: The simulator standing in for the order API.
SIMULATOR = "order API"
#: Share of the order API's answers lost after it placed the order (the retry must not place it twice).
LOST_RESPONSES = 0.05
#: The order API wants tokens of this scope, living this long (seconds): a demo run crosses expiries.
ORDER_API_SCOPE, TOKEN_LIFETIME = "orders.api", 30
#: A placed order whose row has not changed for this long is said to be waiting (for its lease to end), seconds.
STALLED_SECONDS = 30


class OrdersPart(DemoPart):
    """Sample orders placed at the order API simulator, which fails a share of the calls."""

    count = 100
    failure_rate = 0.2
    ids: list[int]
    #: The id range of the orders announced by OrderCreated (empty: none).
    announced: tuple[int, int] = (0, -1)

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--orders", type=whole(1, 100_000), default=100, help="sample orders to place (default 100)"
        )
        parser.add_argument(
            "--failure-rate",
            type=share,
            default=0.2,
            metavar="SHARE",
            help="share of the order API's calls that fail transiently (default 0.2)",
        )

    def configure(self, args: argparse.Namespace) -> None:
        self.count, self.failure_rate = args.orders, args.failure_rate

    def simulator(self) -> SimulatorUse:
        return SimulatorUse(
            SIMULATOR,
            (
                *("--failure-rate", str(self.failure_rate), "--lost-response-rate", str(LOST_RESPONSES)),
                *("--require-token", f"orders={ORDER_API_SCOPE}", "--token-lifetime", str(TOKEN_LIFETIME)),
            ),
            f"failing {self.failure_rate:.0%} of calls transiently and losing {LOST_RESPONSES:.0%} of its answers "
            f"after placing the order; behind its identity server ({TOKEN_LIFETIME} s tokens, docs/identity.md)",
        )

    def environment(self, ctx: DemoContext) -> dict[str, str]:
        return {
            "BACKLANE_ORDERS__BASE_URL": ctx.simulator_url(SIMULATOR),
            "BACKLANE_ORDERS__STATUS_POLL_SECONDS": "1",
            # OAuth2 client credentials from the simulator's /connect/token (docs/identity.md).
            "BACKLANE_ORDERS__OAUTH__TOKEN_URL": f"{ctx.simulator_url(SIMULATOR)}/connect/token",
            "BACKLANE_ORDERS__OAUTH__CLIENT_ID": DEMO_CLIENT_ID,
            "BACKLANE_ORDERS__OAUTH__CLIENT_SECRET": DEMO_CLIENT_SECRET,
            "BACKLANE_ORDERS__OAUTH__SCOPE": ORDER_API_SCOPE,
            "BACKLANE_ORDERS__OAUTH__RENEW_MARGIN_SECONDS": "10",
        }

    def seed(self, ctx: DemoContext) -> str:
        self.ids = create_orders(ctx.db, self.count, ctx.now)
        return f"{len(self.ids)} orders"

    def start(self, ctx: DemoContext) -> tuple[str, ...]:
        half = self.ids[: len(self.ids) // 2]
        ctx.publish(
            [(ORDER_CREATED_QUEUE, json.dumps(OrderCreated(version=1, order_id=i).envelope()).encode()) for i in half]
        )
        if half:
            self.announced = (min(half), max(half))
        return (
            f"published {len(half)} OrderCreated messages to '{ORDER_CREATED_QUEUE}' as another service would; "
            f"the other {len(self.ids) - len(half)} orders wait for the clock's discover tick (every minute)",
        )

    def first_discover(self) -> tuple[str, ...]:
        return ()  # half come in by OrderCreated, the rest wait for the clock on purpose

    def api_stats(self, ctx: DemoContext) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{ctx.simulator_url(SIMULATOR)}/_admin/stats", timeout=5).json()
        return stats

    def look(self, ctx: DemoContext) -> PartResult:
        at = now()

        def leased(value: Any) -> bool:
            return value is not None and as_utc(value) > at

        with ctx.db.transaction() as session:
            counts = Counter(dict(session.execute(select(Order.status, func.count()).group_by(Order.status)).all()))  # type: ignore[arg-type]
            in_flight = sum(
                1
                for (lease,) in session.execute(
                    select(Order.lease_until).where(Order.status == "pending", Order.lease_until.is_not(None))
                )
                if leased(lease)
            )
            stalled = [
                as_utc(lease)  # type: ignore[arg-type]  # leased() says it is set
                for lease, updated in session.execute(
                    select(Order.lease_until, Order.updated_at).where(Order.status == "placed")
                )
                if leased(lease) and (at - as_utc(updated)).total_seconds() > STALLED_SECONDS
            ]
            announced_pending = session.scalar(
                select(func.count()).where(Order.status == "pending", Order.id.between(*self.announced))
            )
        stats = self.api_stats(ctx)
        api = stats["orders"]
        line = (
            f"pending {counts.get('pending', 0):>4}  placed {counts.get('placed', 0):>4}  "
            f"succeeded {counts.get('succeeded', 0):>4}  failed {counts.get('failed', 0):>3}  │ order API: "
            f"{api['created']} created, {api['replays']} replays, {stats['failures']['transient']} transient errors"
        )
        waits = []
        pending = counts.get("pending", 0)
        if pending and not in_flight and not announced_pending:
            waits.append(Wait("orders", f"{pending} orders wait for the next discover tick in {next_tick_in()} s"))
        if stalled:
            ends = max(0, round((min(stalled) - now()).total_seconds()))
            waits.append(
                Wait(
                    "placed",
                    f"{len(stalled)} placed orders untouched for {STALLED_SECONDS} s: should their message be lost, "
                    f"discover takes them again when their lease ends in {ends} s (BACKLANE_ORDERS__LEASE_SECONDS)",
                )
            )
        settled = counts.get("succeeded", 0) + counts.get("failed", 0) >= len(self.ids)
        return PartResult((line,), settled, tuple(waits))

    def outcome(self, ctx: DemoContext) -> Outcome:
        api = self.api_stats(ctx)["orders"]
        by_key = api["by_key"]
        with ctx.db.transaction() as session:
            rows = session.execute(select(Order.request_id, Order.status)).all()
        creations = [by_key.get(request_id, {}).get("creations", 0) for request_id, _ in rows]
        twice = sum(1 for n in creations if n > 1)
        succeeded = sum(1 for _, status in rows if status == "succeeded")
        line = (
            f"all {len(rows)} settled: {succeeded} succeeded, {len(rows) - succeeded} failed; placed at the "
            f"order API exactly once: {creations.count(1)}, twice: {twice}; idempotent replays absorbed: "
            f"{api['replays']}"
        )
        return Outcome((line,), (f"{twice} orders placed twice",) if twice else ())

    def failures(self, ctx: DemoContext) -> list[Failure]:
        queue = self.queue(self.pipelines[0])
        with ctx.db.transaction() as session:
            rows = session.execute(select(Order.id, Order.failure_reason).where(Order.status == "failed")).all()
        return [Failure(queue, f"order {order_id}", reason) for order_id, reason in rows]


PART = OrdersPart
