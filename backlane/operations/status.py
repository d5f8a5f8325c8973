"""``backlane status``: every pipeline on one screen.

Per pipeline: rows due / in flight / done / failed (from the database, through
the pipeline's ``stats`` hook), its queue's depths read from the RabbitMQ
management API (ready, unacked, delayed in ``.DQ``, dead-lettered in ``.XQ``),
and its health (each pipeline's own health rows). ``--json`` gives the same data for
scripts. No setting marked secret is ever part of the output.

What cannot be read is unknown — ``None`` in JSON, ``?`` on screen — never 0 and
never healthy: an unreachable database or RabbitMQ makes the overall health
unhealthy, a database without backlane's schema is "not migrated", and a
disabled pipeline or section is "disabled" and makes nothing unhealthy. Status
only reads: a SQLite URL naming a file that does not exist is reported, not
created.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dramatiq.common import dq_name, xq_name

from backlane.core.health import HealthRow
from backlane.core.registry import Registry
from backlane.core.runtime import Runtime
from backlane.db.claims import ESTIMATED, bounded_counts
from backlane.errors import named_cause as _one_line
from backlane.operations.health import (
    DISABLED,
    HEALTHY,
    check_broker,
    check_database,
    pauses_now,
    with_pauses,
    worst,
)
from backlane.operations.management import ManagementClient, QueueDepth
from backlane.problems import management_problem
from backlane.resilience.breaker import all_breaker_states
from backlane.settings import Settings

DEPTHS = ("ready", "unacked", "delayed", "dead_lettered")


def queue_row(name: str, depths: dict[str, QueueDepth] | None) -> dict[str, int | None]:
    if depths is None:  # the management API could not be read: unknown, not empty
        return {key: None for key in (*DEPTHS, "consumers")}
    none = QueueDepth(0, 0, 0)
    main, delayed, dead = (depths.get(n, none) for n in (name, dq_name(name), xq_name(name)))
    return {
        "ready": main.ready,
        "unacked": main.unacked,
        # Dramatiq workers hold delayed messages unacked until their time comes.
        "delayed": delayed.ready + delayed.unacked,
        "dead_lettered": dead.ready + dead.unacked,
        "consumers": main.consumers,
    }


def read_queues(settings: Settings) -> tuple[dict[str, QueueDepth] | None, dict[str, Any]]:
    """Every queue's depths from the RabbitMQ management API, and whether it answered:
    ``(None, {"reachable": False, "error": line})`` when it did not (depths unknown, not 0)."""
    management = ManagementClient(settings.broker, timeout=settings.broker.command_timeout)
    try:
        return management.queues(), {"reachable": True}
    except Exception as exc:
        problem = management_problem(exc, settings.broker.management_url)
        line = problem.line if problem else f"RabbitMQ management API: {_one_line(exc)}"
        return None, {"reachable": False, "error": line}
    finally:
        management.close()


def probe_broker(settings: Settings) -> dict[str, Any]:
    """RabbitMQ accepts our connection (see :func:`~backlane.operations.health.check_broker`)."""
    return check_broker(settings.broker.url.get_secret_value(), settings.broker.command_timeout)


def collect_status(
    registry: Registry,
    runtime: Runtime,
    *,
    broker_probe: Callable[[Settings], dict[str, Any]] = probe_broker,
    queue_reader: Callable[[Settings], tuple[dict[str, QueueDepth] | None, dict[str, Any]]] = read_queues,
    database_probe: Callable[[Runtime], dict[str, Any]] | None = None,
    only: str | None = None,
    count_limit: int | None = None,
) -> dict[str, Any]:
    """Everything ``backlane status`` shows (``only``: that pipeline's row alone). The probes read
    RabbitMQ and check the database; the dashboard passes cached ones, so many open pages
    do not load either. With ``count_limit`` the item counts are bounded
    (:func:`~backlane.db.claims.bounded_counts`: PostgreSQL's estimate above it, named under
    ``estimated``); without it every row is counted."""
    settings = runtime.settings
    timeout = settings.broker.command_timeout
    errors: list[str] = []

    broker = broker_probe(settings)
    database = database_probe(runtime) if database_probe else check_database(runtime, timeout)
    for part in (broker, database):
        if "error" in part:
            errors.append(part["error"])
    readable = database["health"] == HEALTHY

    depths, management_state = queue_reader(settings)
    if not management_state["reachable"]:
        errors.append(management_state["error"] + " (queue depths unknown)")

    pauses = pauses_now(runtime) if readable else None
    pipelines = []
    for registered in registry:
        if only is not None and registered.name != only:
            continue
        ctx = registered.context()
        config = ctx.config
        hooks = registered.pipeline
        row: dict[str, Any] = {
            "name": registered.name,
            "purpose": hooks.purpose.value,
            "enabled": config.enabled,
            "schedule": config.tick,
            "queue": hooks.queue_name,
            "queue_depth": queue_row(hooks.queue_name, depths),
            "items": None,
            "health_rows": [],
            "health": None,
        }
        if readable:
            try:
                with bounded_counts(count_limit) if count_limit is not None else contextlib.nullcontext():
                    row["items"] = hooks.stats(ctx) if hooks.stats else {}
                row["health_rows"] = list(hooks.health(ctx)) if hooks.health and config.enabled else []
                if config.enabled:
                    row["health_rows"] = with_pauses(registered.name, row["health_rows"], pauses, runtime)
                row["health"] = worst([r.health for r in row["health_rows"]])
                whole = pauses.paused(registered.name) if pauses is not None else None
                if whole is not None:
                    row["health"] = row["health_rows"][0].health
            except Exception as exc:
                errors.append(f"{registered.name}: its rows cannot be read ({_one_line(exc)})")
        if not config.enabled:
            row["health"] = DISABLED
        pipelines.append(row)

    breakers: list[dict[str, Any]] | None = None
    if readable:
        try:
            breakers = all_breaker_states(runtime.database, runtime.clock.now())
        except Exception as exc:
            errors.append(f"breakers cannot be read ({_one_line(exc)})")

    other_queues = sorted({a.queue_name for a in runtime.broker.actors.values()} - {p["queue"] for p in pipelines})
    parts: list[str | None] = [broker["health"], database["health"]] + [p["health"] for p in pipelines]
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "health": worst(parts),
        "broker": broker,
        "database": database,
        "management": management_state,
        "pipelines": pipelines,
        "queues": {name: queue_row(name, depths) for name in other_queues},
        "breakers": breakers,
        "errors": errors,
    }


def _cell(value: Any, width: int) -> str:
    """A right-aligned number; ``?`` when unknown, ``-`` when not applicable."""
    shown = "?" if value is None else "-" if value == "" else str(value)
    return f"{shown:>{width}}"


#: 80 columns with the longest health word ("unhealthy").
_HEADER = (
    f"{'PIPELINE':<15}{'ON':<3}{'DUE':>6}{'FLIGHT':>7}{'DONE':>6}{'FAILED':>7} │"
    f"{'READY':>6}{'UNACK':>6}{'DELAY':>6}{'DEAD':>6} HEALTH"
)


def estimate(value: int) -> str:
    """An estimated count, short enough for its column: ``≈9.0M``, ``≈120k``, ``≈950``."""
    for size, unit in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if value >= size:
            shown = f"{value / size:.1f}" if value < 10 * size else f"{value / size:.0f}"
            return f"≈{shown}{unit}"
    return f"≈{value}"


def _row(name: str, on: str, items: dict[str, Any] | None, depth: dict[str, Any], health: str) -> str:
    def item(key: str) -> Any:
        if items is None:
            return None
        value = items.get(key, "")
        return estimate(value) if key in items.get(ESTIMATED, ()) else value

    return (
        f"{name[:14]:<15}{on:<3}{_cell(item('due'), 6)}{_cell(item('in_flight'), 7)}"
        f"{_cell(item('done'), 6)}{_cell(item('failed'), 7)} │"
        f"{_cell(depth['ready'], 6)}{_cell(depth['unacked'], 6)}{_cell(depth['delayed'], 6)}"
        f"{_cell(depth['dead_lettered'], 6)} {health}"
    ).rstrip()


def _shown_health(value: str | None) -> str:
    return "?" if value is None else value


def render(
    status: dict[str, Any], *, width: int | None = None, height: int | None = None, compact: bool = False
) -> str:
    """The status as text. ``compact`` (``--watch``): each pipeline's details folded into one
    summary line, every line cut to ``width`` and the whole to ``height`` lines, so it fits
    the terminal (80x24 with every built-in pipeline)."""
    database = status["database"]
    db_text = database.get("state", "?") if database["health"] != HEALTHY else "ok"
    management = "ok" if status["management"]["reachable"] else "unreachable"
    lines = [
        f"backlane {status['generated_at']}  HEALTH {_shown_health(status['health'])}",
        f"rabbitmq {status['broker'].get('state', '?')} · management API {management} · database {db_text}",
    ]
    for error in status["errors"]:
        wrapped = textwrap.wrap(error, width - 2) if width and not compact else [error]
        lines += ["! " + wrapped[0], *("  " + w for w in wrapped[1:])]
    lines += ["", _HEADER]
    for p in status["pipelines"]:
        on = "yes" if p["enabled"] else "no"
        lines.append(_row(p["name"], on, p["items"], p["queue_depth"], _shown_health(p["health"])))
    for name, depth in status["queues"].items():
        lines.append(_row(f"({name})", "", {}, depth, ""))
    details: list[str] = []
    for p in status["pipelines"]:
        if p["health_rows"]:
            details += (
                _health_summary(p) if compact else [f"{p['name']}:", *(_health_line(r) for r in p["health_rows"])]
            )
    breakers = status["breakers"]
    if breakers:
        opened = [b for b in breakers if b["state"] != "closed"]
        if compact:
            shown = ", ".join(f"{b['name']} {b['state']} {b['retry_in_s']:.0f}s" for b in opened)
            details.append(f"breakers: {shown}" if opened else f"breakers: {len(breakers)} closed")
        else:
            details.append("breakers:")
            for b in breakers:
                reopen = f", calls again in {b['retry_in_s']:.0f}s" if b["state"] == "open" else ""
                details.append(
                    f"  {b['name']:<22} {b['state']:<9} {b['consecutive_failures']} failures in a row, "
                    f"opened {b['times_opened']}x{reopen}"
                )
    if details:
        lines += ["", *details]
    if width:
        lines = [line if len(line) <= width else line[: width - 1] + "…" for line in lines]
    if height and len(lines) > height:
        cut = len(lines) - height + 1
        lines = [*lines[: height - 1], f"… {cut} more line(s): run `backlane status` for all"[: width or None]]
    return "\n".join(lines)


def _health_summary(pipeline: dict[str, Any]) -> list[str]:
    """One line for a pipeline's health rows: counts per state, naming the rows not healthy."""
    rows = pipeline["health_rows"]
    by_state: dict[str, list[str]] = {}
    for row in rows:
        by_state.setdefault(_shown_health(row.health), []).append(row.name)
    parts = []
    for state in ("healthy", "degraded", "unhealthy", "?", "disabled"):
        names = by_state.get(state, [])
        if names:
            shown = ", ".join(names[:3]) + (f", +{len(names) - 3}" if len(names) > 3 else "")
            parts.append(f"{len(names)} {state}" + ("" if state == "healthy" else f" ({shown})"))
    return [f"{pipeline['name']}: " + "; ".join(parts)]


def _health_line(row: HealthRow) -> str:
    """One short line per health row: its name, its health, and the pipeline's own summary."""
    return f"  {row.name:<19}{_shown_health(row.health):<10}{row.summary}".rstrip()
