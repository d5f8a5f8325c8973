"""Two exports never share a file, and an operator's interval cannot overflow a run's schedule:
real worker, RabbitMQ, database and product API simulator."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from actors.exports.commands import MAX_INTERVAL_SECONDS, add_export
from actors.exports.models import Export
from backlane.core.clock import as_utc
from backlane.core.discovery import discover
from backlane.core.registry import REGISTRY
from backlane.problems import Problem
from tests.integration.conftest import App
from tests.integration.test_export_confinement import _export, _failed_for_good, _runs, out  # noqa: F401
from tests.waiting import wait_until


@pytest.mark.parametrize("second", ["same.csv", "./same.csv", "SAME.csv", "same.csv.partial", "same.csv/x.csv"])
def test_exports_add_refuses_a_path_another_export_writes(app: App, second: str) -> None:
    add_export(app.db, app.clock, "first", "csv", "same.csv", None)
    with pytest.raises(Problem) as refused:
        add_export(app.db, app.clock, "second", "jsonl", second, None)
    assert "collides with export 'first'" in refused.value.line
    with app.db.transaction() as session:
        assert list(session.scalars(select(Export.name))) == ["first"]


def test_exports_add_refuses_an_endless_interval_before_the_database(app: App) -> None:
    from actors.exports.commands import parse_interval

    with pytest.raises(Problem, match="--interval '4000000d'"):
        add_export(app.db, app.clock, "e", "csv", "e.csv", parse_interval("4000000d"))


def test_exports_sharing_a_file_in_sql_fail_for_good_and_write_nothing(
    app: App,
    worker: Any,
    out: Path,  # noqa: F811
) -> None:
    csv = _export(app, "csv", "same.csv")
    jsonl = _export(app, "jsonl", "./same.csv")
    fine = _export(app, "fine", "fine.csv")
    assert discover(REGISTRY.get("exports")).enqueued == 3
    for export_id in (csv, jsonl):
        run = _failed_for_good(app, export_id)
        assert "collides with export" in (run.error or ""), run.error
        assert len(_runs(app, export_id)) == 1
    assert not (out / "same.csv").exists() and not (out / "same.csv.partial").exists()
    # The third export runs beside the two collisions: wait for it (it may still be running when
    # they have both failed), never a snapshot of a race.
    wait_until(lambda: (out / "fine.csv").exists() or bool(_runs(app, fine)), timeout=30, what="the fine export")


def test_a_huge_interval_from_sql_does_not_overflow_the_failure_path(
    app: App,
    worker: Any,
    out: Path,  # noqa: F811
) -> None:
    broken = _export(app, "broken", "../outside.csv")
    with app.db.transaction() as session:
        session.get(Export, broken).interval_seconds = 4_000_000 * 86400.0  # type: ignore[union-attr]
    assert discover(REGISTRY.get("exports")).enqueued == 1
    run = _failed_for_good(app, broken)
    assert "escapes its directory" in (run.error or "")
    with app.db.transaction() as session:
        next_run = as_utc(session.get(Export, broken).next_run_at)  # type: ignore[union-attr, arg-type]
    assert next_run - app.clock.now() <= timedelta(seconds=MAX_INTERVAL_SECONDS + 60)
