"""Product export end to end: real product API simulator, real files, RabbitMQ and both databases."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from actors.exports.models import Export, ExportRun
from actors.exports.outages import mark_down, mark_up
from backlane.core.discovery import TickResult, discover
from backlane.core.registry import REGISTRY
from backlane.db.engine import Database
from tests.integration.conftest import App
from tests.waiting import wait_until

PRODUCTS, PAGE_SIZE = 95, 10  # ten pages, the last one short


@pytest.fixture(autouse=True)
def export_settings(app: App, tmp_path: Path) -> Path:
    out = tmp_path / "exports"
    app.use_simulator("exports")
    app.configure("exports", output_dir=str(out), page_size=PAGE_SIZE, min_backoff_ms=50, max_backoff_ms=200)
    app.simulator.configure(product_count=PRODUCTS)
    return out


def add_export(app: App, name: str, fmt: str = "csv", *, due: bool = True) -> int:
    """An export row; ``due`` makes it due now instead of waiting for its initial delay."""
    now = app.clock.now()
    row = {"name": name, "format": fmt, "path": f"{name}.{fmt}", "next_page": 1, "rows_written": 0}
    row |= {"partial_bytes": 0, "next_run_at": now if due else None, "created_at": now, "updated_at": now}
    with app.db.transaction() as session:
        return session.execute(insert(Export).returning(Export.id), row).scalar_one()


def tick(app: App) -> TickResult:
    return discover(REGISTRY.get("exports"))


def runs(app: App, export_id: int) -> list[ExportRun]:
    with app.db.transaction() as session:
        return list(session.scalars(select(ExportRun).where(ExportRun.export_id == export_id).order_by(ExportRun.id)))


def outcomes(app: App, export_id: int) -> list[str]:
    return [run.outcome for run in runs(app, export_id)]


def page_requests(app: App) -> dict[int, int]:
    return {int(page): n for page, n in app.sim_stats()["products"]["page_requests"].items()}


def run_to_success(app: App, export_id: int, done_before: int = 0) -> ExportRun:
    assert tick(app).enqueued == 1
    wait_until(lambda: outcomes(app, export_id).count("succeeded") > done_before, timeout=30, what="export written")
    return runs(app, export_id)[-1]


def test_a_new_export_waits_its_initial_delay_then_runs_on_its_interval(app: App, worker: Any, tmp_path: Path) -> None:
    export_id = add_export(app, "products", due=False)

    assert tick(app).enqueued == 0, "first seen: scheduled 30 s from now"
    app.clock.advance(seconds=29)
    assert tick(app).enqueued == 0
    app.clock.advance(seconds=1)
    run = run_to_success(app, export_id)

    assert (run.rows, run.pages, run.first_page) == (PRODUCTS, 10, 1)
    lines = Path(run.file_path or "").read_text().splitlines()
    assert len(lines) == PRODUCTS + 1 and lines[0] == "id,sku,name,category,price,stock"
    assert [p.name for p in (tmp_path / "exports").iterdir()] == ["products.csv"], "no partial file left behind"
    app.clock.advance(seconds=299)
    assert tick(app).enqueued == 0
    app.clock.advance(seconds=1)
    run_to_success(app, export_id, done_before=1)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_export_interrupted_at_page_k_resumes_at_page_k(app: App, worker: Any, fmt: str) -> None:
    k = 4
    app.simulator.configure(product_fail_page=k, product_fail_times=1)
    interrupted = add_export(app, "interrupted", fmt)

    run = run_to_success(app, interrupted)

    assert page_requests(app) == {page: 2 if page == k else 1 for page in range(1, 11)}
    assert outcomes(app, interrupted) == ["succeeded"] and run.rows == PRODUCTS
    uninterrupted = add_export(app, "uninterrupted", fmt)
    reference = run_to_success(app, uninterrupted)
    assert Path(run.file_path or "").read_bytes() == Path(reference.file_path or "").read_bytes()


def test_a_run_that_failed_for_good_is_resumed_by_the_next_run(app: App, worker: Any) -> None:
    k = 6
    app.configure("exports", max_retries=0)
    app.simulator.configure(product_fail_page=k, product_fail_times=1)
    export_id = add_export(app, "products")

    assert tick(app).enqueued == 1
    wait_until(lambda: outcomes(app, export_id) == ["failed"], timeout=30, what="the run failed")
    failed = runs(app, export_id)[0]
    assert failed.pages == k - 1 and "503" in (failed.error or "")
    app.clock.advance(seconds=app.config("exports").interval_seconds)
    resumed = run_to_success(app, export_id)

    assert (resumed.first_page, resumed.pages, resumed.rows) == (k, 10, PRODUCTS)
    assert page_requests(app) == {page: 2 if page == k else 1 for page in range(1, 11)}
    reference = run_to_success(app, add_export(app, "reference"))
    assert Path(resumed.file_path or "").read_bytes() == Path(reference.file_path or "").read_bytes()


def test_with_the_product_api_down_no_export_starts_and_the_outage_is_logged_once(
    app: App, worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="backlane.pipeline.exports")
    app.simulator.configure(outage=["products"])
    export_id = add_export(app, "products")

    for _ in range(5):
        assert tick(app).enqueued == 0
        app.clock.advance(seconds=60)

    down = [r for r in caplog.records if "product API is down" in r.getMessage()]
    assert len(down) == 1 and "503" in down[0].getMessage()
    assert runs(app, export_id) == [] and page_requests(app) == {}
    assert app.sim_stats()["products"]["health_checks"] == 0, "the outage answers at the gate"
    assert app.sim_stats()["requests"]["products.health"] == 5
    exports = REGISTRY.get("exports")
    assert exports.pipeline.health is not None and exports.pipeline.stats is not None
    assert exports.pipeline.health(exports.context())[0].health == "degraded"
    assert exports.pipeline.stats(exports.context())["due"] == 1

    app.simulator.configure(outage=[])
    run_to_success(app, export_id)
    back = [r for r in caplog.records if "product API is back" in r.getMessage()]
    assert len(back) == 1 and "0:05:00" in back[0].getMessage()
    assert exports.pipeline.health(exports.context())[0].health == "healthy"
    assert exports.pipeline.stats(exports.context())["done"] == 1


def test_the_outage_memory_is_shared_between_processes(app: App, database_url: str) -> None:
    other = Database(database_url)  # another process's engine on the same database
    now = app.clock.now()
    try:
        assert mark_down(app.db, "svc", now, "503") is True
        assert mark_down(other, "svc", now + timedelta(minutes=1), "503") is False
        assert mark_up(other, "svc", now + timedelta(minutes=2)) == now
        assert mark_up(app.db, "svc", now + timedelta(minutes=3)) is None
        assert mark_down(app.db, "svc", now + timedelta(minutes=4), "timeout") is True
    finally:
        other.dispose()


def test_the_breaker_opens_after_three_failures_and_a_trial_closes_it(app: App, worker: Any) -> None:
    app.configure("exports", max_retries=10, breaker_open_seconds=1)
    app.simulator.configure(product_fail_page=1, product_fail_times=3)
    export_id = add_export(app, "products")

    assert tick(app).enqueued == 1
    wait_until(lambda: breaker_state(app) == "open", timeout=30, what="the breaker opened")
    assert page_requests(app) == {1: 3}
    app.clock.advance(seconds=2)  # past the open period: the next attempt is the trial
    wait_until(lambda: outcomes(app, export_id) == ["succeeded"], timeout=30, what="export written after the trial")
    assert page_requests(app)[1] == 4 and breaker_state(app) == "closed"


def breaker_state(app: App) -> str:
    from backlane.resilience.breaker import CircuitBreaker

    return str(CircuitBreaker(app.db, app.clock, "product_api", 3, 30).state()["state"])


def test_a_lost_partial_file_restarts_the_run_from_page_one(app: App, worker: Any, export_settings: Path) -> None:
    export_id = add_export(app, "products")
    with app.db.transaction() as session:  # progress recorded, but its partial file is gone
        run_id = session.execute(
            insert(ExportRun).returning(ExportRun.id),
            {"export_id": export_id, "first_page": 1, "rows": 30, "pages": 3, "started_at": app.clock.now()},
        ).scalar_one()
        session.execute(
            update(Export)
            .where(Export.id == export_id)
            .values(run_id=run_id, next_page=4, partial_bytes=999, rows_written=30)
        )

    assert tick(app).enqueued == 1
    wait_until(lambda: outcomes(app, export_id) == ["failed", "succeeded"], timeout=30, what="a fresh run")
    lost, fresh = runs(app, export_id)
    assert lost.error == "partial file lost" and (fresh.first_page, fresh.rows) == (1, PRODUCTS)
