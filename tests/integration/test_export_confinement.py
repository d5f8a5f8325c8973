"""Export files stay in their output directory: real worker, RabbitMQ, database and product API simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from actors.exports.models import Export, ExportRun
from backlane.core.discovery import discover
from backlane.core.registry import REGISTRY
from tests.integration.conftest import App
from tests.waiting import wait_until


@pytest.fixture
def out(app: App, tmp_path: Path) -> Path:
    out = tmp_path / "exports"
    out.mkdir()
    app.use_simulator("exports")
    app.configure("exports", output_dir=str(out), page_size=10, min_backoff_ms=50, max_backoff_ms=200)
    app.simulator.configure(product_count=25)
    return out


def _export(app: App, name: str, path: str) -> int:
    now = app.clock.now()
    with app.db.transaction() as session:
        return session.execute(
            insert(Export).returning(Export.id),
            {"name": name, "format": "csv", "path": path, "next_run_at": now, "created_at": now, "updated_at": now},
        ).scalar_one()


def _runs(app: App, export_id: int) -> list[ExportRun]:
    with app.db.transaction() as session:
        return list(session.scalars(select(ExportRun).where(ExportRun.export_id == export_id)))


def _failed_for_good(app: App, export_id: int) -> ExportRun:
    wait_until(lambda: [r.outcome for r in _runs(app, export_id)] == ["failed"], timeout=30, what="run failed")
    return _runs(app, export_id)[0]


def test_an_export_path_leaving_the_output_directory_fails_for_good_and_writes_nothing(
    app: App, worker: Any, out: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    escape = _export(app, "escape", "../escape.csv")
    absolute = _export(app, "absolute", str(tmp_path / "absolute.csv"))
    symlink = _export(app, "symlink", "link/through.csv")
    fine = _export(app, "fine", "sub/fine.csv")

    assert discover(REGISTRY.get("exports")).enqueued == 4
    for export_id, why in (
        (escape, "'../escape.csv' escapes its directory"),
        (absolute, "escapes its directory"),
        (symlink, "'link/through.csv' leads outside its directory"),
    ):
        run = _failed_for_good(app, export_id)
        assert why in (run.error or ""), run.error
        assert run.file_path is None
    wait_until(lambda: [r.outcome for r in _runs(app, fine)] == ["succeeded"], timeout=30, what="fine export")

    assert not (tmp_path / "escape.csv").exists() and not (tmp_path / "absolute.csv").exists()
    assert list(outside.iterdir()) == []
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.csv*")) == ["exports/sub/fine.csv"]
    # Refused for good: one attempt each, no retry, and the product API was never paged for them.
    assert all(len(_runs(app, e)) == 1 for e in (escape, absolute, symlink))
