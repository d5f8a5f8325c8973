"""``backlane status``: every pipeline on one screen.

Per pipeline: rows due / in flight / done / failed (from the database, through
the pipeline's ``stats`` hook), its queue's depths read from the RabbitMQ
management API (ready, unacked, delayed in ``.DQ``, dead-lettered in ``.XQ``),
and its health rows (catalog freshness, breakers). ``--json`` gives the same
data for scripts. No setting marked secret is ever part of the output.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dramatiq.common import dq_name, xq_name

from backlane.core.registry import Registry
from backlane.core.runtime import Runtime
from backlane.operations.health import worst
from backlane.operations.management import ManagementClient, QueueDepth
from backlane.resilience.breaker import all_breaker_states


def _queue_row(name: str, depths: dict[str, QueueDepth]) -> dict[str, int]:
    main = depths.get(name, QueueDepth(0, 0, 0))
    delayed = depths.get(dq_name(name), QueueDepth(0, 0, 0))
    dead = depths.get(xq_name(name), QueueDepth(0, 0, 0))
    return {
        "ready": main.ready,
        "unacked": main.unacked,
        # Dramatiq workers hold delayed messages unacked until their time comes.
        "delayed": delayed.ready + delayed.unacked,
        "dead_lettered": dead.ready + dead.unacked,
        "consumers": main.consumers,
    }


def collect_status(registry: Registry, runtime: Runtime) -> dict[str, Any]:
    management = ManagementClient(runtime.settings.broker)
    errors: list[str] = []
    try:
        depths = management.queues()
    except Exception as exc:
        depths = {}
        errors.append(
            f"RabbitMQ management API unreachable at {runtime.settings.broker.management_url}: {exc.__class__.__name__}"
        )
    finally:
        management.close()

    pipelines = []
    for registered in registry:
        ctx = registered.context()
        config = ctx.config
        hooks = registered.pipeline
        row: dict[str, Any] = {
            "name": registered.name,
            "purpose": hooks.purpose.value,
            "enabled": config.enabled,
            "schedule": config.tick,
            "queue": hooks.queue_name,
            "queue_depth": _queue_row(hooks.queue_name, depths),
        }
        try:
            row["items"] = hooks.stats(ctx) if hooks.stats else None
            row["health_rows"] = hooks.health(ctx) if hooks.health else []
        except Exception as exc:
            row["items"], row["health_rows"] = None, []
            errors.append(f"{registered.name}: database unreachable ({exc.__class__.__name__})")
        row["health"] = worst([r.get("health", "healthy") for r in row["health_rows"]])
        pipelines.append(row)

    try:
        breakers = all_breaker_states(runtime.database, runtime.clock.now())
    except Exception as exc:
        breakers = []
        errors.append(f"breakers unreadable ({exc.__class__.__name__})")

    other_queues = sorted({a.queue_name for a in runtime.broker.actors.values()} - {p["queue"] for p in pipelines})
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pipelines": pipelines,
        "queues": {name: _queue_row(name, depths) for name in other_queues},
        "breakers": breakers,
        "errors": errors,
    }


def render(status: dict[str, Any]) -> str:
    lines = [f"backlane status at {status['generated_at']}", ""]
    header = (
        f"{'PIPELINE':<18} {'ON':<3} {'DUE':>7} {'FLIGHT':>7} {'DONE':>8} {'FAILED':>7} │ "
        f"{'READY':>7} {'UNACK':>6} {'DELAY':>6} {'DEAD':>6}  HEALTH"
    )
    lines += [header, "─" * len(header)]
    for p in status["pipelines"]:
        items = p["items"] or {}
        q = p["queue_depth"]
        lines.append(
            f"{p['name']:<18} {'yes' if p['enabled'] else 'no':<3} {items.get('due', '-'):>7} "
            f"{items.get('in_flight', '-'):>7} {items.get('done', '-'):>8} {items.get('failed', '-'):>7} │ "
            f"{q['ready']:>7} {q['unacked']:>6} {q['delayed']:>6} {q['dead_lettered']:>6}  {p['health']}"
        )
    for name, q in status["queues"].items():
        lines.append(
            f"{'(' + name + ')':<18} {'':<3} {'':>7} {'':>7} {'':>8} {'':>7} │ "
            f"{q['ready']:>7} {q['unacked']:>6} {q['delayed']:>6} {q['dead_lettered']:>6}"
        )
    for p in status["pipelines"]:
        if p["health_rows"]:
            lines += ["", f"{p['name']}:"]
            lines += ["  " + _health_line(row) for row in p["health_rows"]]
    if status["breakers"]:
        lines += ["", "breakers:"]
        for b in status["breakers"]:
            detail = f"opens again for calls in {b['retry_in_s']:.0f}s" if b["state"] == "open" else ""
            lines.append(
                f"  {b['name']:<28} {b['state']:<10} failures in a row {b['consecutive_failures']:<3} "
                f"opened {b['times_opened']}x {detail}"
            )
    if status["errors"]:
        lines += ["", *("! " + e for e in status["errors"])]
    return "\n".join(lines)


def _health_line(row: dict[str, Any]) -> str:
    name = row.get("name", "?")
    rest = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("name", "health") and v is not None)
    return f"{name:<20} {row.get('health', '?'):<10} {rest}"
