"""What each dashboard page shows, read through the operations code the CLI uses.

The overview is ``backlane status`` (:func:`~backlane.operations.status.collect_status`) with
RabbitMQ's answers cached, plus each pipeline's next tick and throughput; a pipeline's page
is its counts and health rows (the same hooks) and its rows (:mod:`.items`), or, for a pipeline
whose items are not rows, those that failed for good (its ``failed_items`` hook); dead letters
are :func:`~backlane.operations.dead_letters.list_dead_letters`; health is the broker and
database checks of ``/health`` plus each worker's own ``/health``. Nothing here writes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from backlane.db.claims import ESTIMATED, bounded_counts
from backlane.errors import Problem
from backlane.operations import dead_letters as admin
from backlane.operations.dashboard.cache import Cached, Throughput
from backlane.operations.dashboard.charts import pipeline_charts, pipeline_sparkline
from backlane.operations.dashboard.history import History, Sampler
from backlane.operations.dashboard.items import STATES, ItemPage, _cell, list_items
from backlane.operations.health import HEALTHY, check_database
from backlane.operations.status import collect_status, probe_broker, queue_row, read_queues
from backlane.resilience.rate_limit import current_holds

if TYPE_CHECKING:
    from backlane.app import App
    from backlane.settings import DashboardSettings

logger = logging.getLogger("backlane.dashboard")


def next_tick(spec: str, now: datetime) -> datetime | None:
    """When the clock next sends ``spec``'s tick (periodiq's own arithmetic), None if it cannot say."""
    import pendulum
    from periodiq import CronSpec

    try:
        moment = CronSpec.parse(spec).next_valid_date(pendulum.instance(now))
    except Exception:
        return None
    return datetime.fromtimestamp(moment.timestamp(), UTC)


#: The outcomes that finish an item, as backlane_items_total counts them.
FINISHED_OUTCOMES = ("succeeded", "failed")
#: The chart's series by the outcome backlane_items_total counts them under.
CHARTED_OUTCOMES = {"succeeded": "succeeded", "failed": "failed", "retry": "retried"}


def outcomes_from_metrics(text: str) -> dict[str, dict[str, float]]:
    """Items per pipeline and outcome, from one worker's Prometheus text (``backlane_items_total``,
    summed over error classes)."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "backlane_items_total":
                by_outcome = totals.setdefault(sample.labels.get("pipeline", ""), {})
                outcome = sample.labels.get("outcome", "")
                by_outcome[outcome] = by_outcome.get(outcome, 0.0) + sample.value
    return totals


def finished_from_metrics(text: str) -> dict[str, float]:
    """Items finished per pipeline, from one worker's Prometheus text (``backlane_items_total``)."""
    return finished(outcomes_from_metrics(text))


def finished(outcomes: dict[str, dict[str, float]]) -> dict[str, float]:
    return {p: sum(by.get(o, 0.0) for o in FINISHED_OUTCOMES) for p, by in outcomes.items()}


def outcomes_on_workers(urls: list[str]) -> dict[str, dict[str, float]] | None:
    """Items per pipeline and outcome summed over the workers' /metrics; None when none answers."""
    totals: dict[str, dict[str, float]] = {}
    answered = False
    for url in urls:
        metrics = url[: -len("/health")] + "/metrics" if url.endswith("/health") else url.rstrip("/") + "/metrics"
        try:
            response = httpx.get(metrics, timeout=2.0)
            response.raise_for_status()
            found = outcomes_from_metrics(response.text)
        except (httpx.HTTPError, ValueError):
            continue
        answered = True
        for pipeline, by_outcome in found.items():
            mine = totals.setdefault(pipeline, {})
            for outcome, value in by_outcome.items():
                mine[outcome] = mine.get(outcome, 0.0) + value
    return totals if answered else None


def worker_urls(app: App, settings: DashboardSettings) -> list[str]:
    """The workers' /health URLs: the setting's, else this host's worker when it serves one."""
    if settings.workers is not None:
        return [url.strip() for url in settings.workers.split(",") if url.strip()]
    port = app.runtime.settings.worker.metrics_port
    return [f"http://127.0.0.1:{port}/health"] if port else []


@dataclass
class Views:
    """The dashboard's reads, sharing one cache of RabbitMQ's answers across every browser."""

    app: App
    settings: DashboardSettings
    throughput: Throughput = field(default_factory=Throughput)
    history: History = field(default_factory=History)

    def __post_init__(self) -> None:
        runtime_settings = self.app.runtime.settings
        seconds = self.settings.management_cache_seconds
        self._broker = Cached(lambda: probe_broker(runtime_settings), seconds)
        self._queues = Cached(lambda: read_queues(runtime_settings), seconds)
        self._database = Cached(self.database, seconds)
        self._outcomes = Cached(lambda: outcomes_on_workers(worker_urls(self.app, self.settings)), seconds)
        self.sampler = Sampler(self.sample)

    def status(self, only: str | None = None) -> dict[str, Any]:
        """``backlane status`` (``only``: one pipeline's row), RabbitMQ and the schema check read at
        most once per cache period, every count bounded (an estimate above the setting's limit)."""
        with bounded_counts(self.settings.exact_count_limit):
            return collect_status(
                self.app.registry,
                self.app.runtime,
                broker_probe=lambda _settings: self._broker.get(),
                queue_reader=lambda _settings: self._queues.get(),
                database_probe=lambda _runtime: self._database.get(),
                only=only,
            )

    def overview(self) -> dict[str, Any]:
        status = self.status()
        now = datetime.now(UTC)
        outcomes = self._outcomes.get()
        on_workers = None if outcomes is None else finished(outcomes)
        for row in status["pipelines"]:
            pipeline = self.app.registry.get(row["name"]).pipeline
            row["description"] = pipeline.description
            row["next_tick"] = next_tick(row["schedule"], now) if row["enabled"] else None
            row["per_minute"] = self._per_minute(row, on_workers)
            self._record(row, outcomes)
            row["sparkline"] = pipeline_sparkline(self.history, row["name"])
        status["holds"] = None
        if status["database"]["health"] == HEALTHY:
            try:
                status["holds"] = current_holds(self.app.runtime.database, self.app.runtime.clock.now())
            except Exception as exc:
                status["errors"].append(f"rate limits cannot be read ({type(exc).__name__})")
        return status

    def _per_minute(self, row: dict[str, Any], on_workers: dict[str, float] | None) -> float | None:
        """Items a pipeline finishes per minute: from the workers' counters when they answer,
        else from its done + failed rows while those are exact counts (not estimates)."""
        name = row["name"]
        if on_workers is not None:
            return self.throughput.per_minute(f"metrics:{name}", on_workers.get(name, 0.0))
        items = row["items"]
        if items is None or {"done", "failed"} & set(items.get(ESTIMATED, [])):
            return None
        return self.throughput.per_minute(f"rows:{name}", (items.get("done") or 0) + (items.get("failed") or 0))

    def sample(self) -> None:
        """Add the workers' counters and the queues' depths of now to the history (the sampler's
        period; pages add the rows' counts too). Reads RabbitMQ and the workers, never the database."""
        outcomes = self._outcomes.get()
        depths, _ = self._queues.get()
        for registered in self.app.registry:
            if outcomes is not None:
                self._record_outcomes(registered.name, outcomes)
            self.history.record_depths(registered.name, queue_row(registered.pipeline.queue_name, depths))

    def _record(self, row: dict[str, Any], outcomes: dict[str, dict[str, float]] | None) -> None:
        """A page's status row into the history: the workers' counters when they answer, else the
        rows done and failed while those are exact counts; and the queue's depths."""
        name = row["name"]
        self.history.record_depths(name, row["queue_depth"])
        if outcomes is not None:
            self._record_outcomes(name, outcomes)
            return
        items = row["items"]
        if items is not None and not {"done", "failed"} & set(items.get(ESTIMATED, [])):
            self.history.record_counts(name, "rows", {"succeeded": items.get("done"), "failed": items.get("failed")})

    def _record_outcomes(self, name: str, outcomes: dict[str, dict[str, float]]) -> None:
        by_outcome = outcomes.get(name, {})
        counted = {series: by_outcome.get(outcome, 0.0) for outcome, series in CHARTED_OUTCOMES.items()}
        self.history.record_counts(name, "metrics", counted)

    def database(self) -> dict[str, Any]:
        return check_database(self.app.runtime, self.app.runtime.settings.broker.command_timeout)

    def pipeline(
        self, name: str, *, state: str, search: str, before: int | None, page: int | None = None
    ) -> dict[str, Any]:
        """A pipeline's page: its status row, failed rows first, then the rows asked for."""
        registered = self.app.registry.get(name)
        status = self.status(only=name)
        [row] = status["pipelines"]
        self._record(row, self._outcomes.get())
        table = registered.pipeline.table
        result: dict[str, Any] = {"status": status, "pipeline": row, "table": table is not None}
        result["description"] = registered.pipeline.description
        result["can_trigger_rows"] = registered.pipeline.trigger is not None
        result["charts"] = pipeline_charts(self.history, name)
        healthy = status["database"]["health"] == HEALTHY
        if table is None:
            # Items that are not rows (listed from a store): the ones that failed for good, with why.
            failed_items = registered.pipeline.failed_items
            result["listed"] = failed_items is not None
            if failed_items is not None and healthy:
                listing = failed_items(registered.context(), self.settings.page_size, page or 0, search)
                rows = [{key: _cell(value) for key, value in row.items()} for row in listing.rows]
                result["listed_failures"] = {"rows": rows, "next_page": listing.next_page}
            return result
        if not healthy:
            return result
        ctx = registered.context()
        state = state if state in STATES else ("all" if search else "")
        size = self.settings.page_size
        result["reason_column"] = table.reason.name if table.reason is not None else None
        result["searchable"] = [c.name for c in table.search]
        if not state and not search and before is None:  # the default page: failures first
            result["failed"] = list_items(ctx, table, state="failed", limit=size)
            result["items"] = list_items(ctx, table, state="all", limit=size)
        else:
            result["items"] = list_items(
                ctx, table, state=state or "all", search=search, before=before, page=page or 0, limit=size
            )
        result["state"] = state
        return result

    def dead_letters(self) -> dict[str, Any]:
        """Each queue's dead letters (at most the setting's limit per queue), read without consuming."""
        runtime = self.app.runtime
        url = runtime.settings.broker.url.get_secret_value()
        timeout = runtime.settings.broker.command_timeout
        queues = admin.deployment_queues(runtime.broker)
        owners = {r.pipeline.queue_name: r.name for r in self.app.registry if r.pipeline.table is not None}
        result: dict[str, Any] = {"queues": [], "error": None}
        try:
            for queue in queues:
                listings = admin.list_dead_letters(
                    url,
                    [queue],
                    self.settings.dead_letter_limit,
                    missing_ok=True,
                    timeout=timeout,
                    heartbeat=runtime.settings.broker.heartbeat_seconds,
                )
                for listing in listings:
                    letters = [_letter_row(letter, owners.get(queue)) for letter in listing.letters]
                    result["queues"].append(
                        {"queue": queue, "xq": listing.xq, "total": listing.total, "letters": letters}
                    )
        except Problem as problem:
            result["error"] = problem.line
        return result

    def health(self) -> dict[str, Any]:
        broker = self._broker.get()
        database = self._database.get()
        workers = [_worker_health(url) for url in worker_urls(self.app, self.settings)]
        return {"broker": broker, "database": database, "workers": workers}


def _letter_row(letter: admin.DeadLetter, pipeline: str | None) -> dict[str, Any]:
    """A dead letter as listed; ``row_of``: the pipeline whose row its item is, to link to it."""
    row = admin.display_row(letter)
    row["retries"] = admin.retries_of(letter)
    item = row["item"]
    row["row_of"] = pipeline if isinstance(item, int) and not isinstance(item, bool) else None
    row["item"] = item if isinstance(item, str) else json.dumps(item, default=str)
    return row


def _worker_health(url: str) -> dict[str, Any]:
    """One worker's /health: its status and parts, or why it could not be read."""
    try:
        response = httpx.get(url, timeout=2.0)
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"url": url, "status": None, "error": f"not reachable ({type(exc).__name__})"}
    return {
        "url": url,
        "status": body.get("status"),
        "http": response.status_code,
        "broker": (body.get("broker") or {}).get("health"),
        "database": (body.get("database") or {}).get("health"),
    }


__all__ = ["ItemPage", "Views", "next_tick", "worker_urls"]
