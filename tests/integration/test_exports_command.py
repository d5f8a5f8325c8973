"""Exports defined without Python: by `backlane exports add` and by a plain SQL insert; both run.
Real worker, RabbitMQ, both databases and the product API simulator."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from actors.exports.models import Export, ExportRun
from backlane.cli import main
from backlane.core.discovery import discover
from backlane.core.registry import REGISTRY
from tests import docs
from tests.integration.conftest import App
from tests.waiting import wait_until


@pytest.fixture
def out(app: App, tmp_path: Path) -> Path:
    out = tmp_path / "exports"
    app.use_simulator("exports")
    app.configure("exports", output_dir=str(out), page_size=10, min_backoff_ms=50, max_backoff_ms=200)
    app.simulator.configure(product_count=25)
    return out


def _outcomes(app: App) -> dict[str, list[str]]:
    with app.db.transaction() as session:
        names = {row.id: row.name for row in session.execute(select(Export.id, Export.name))}
        runs = list(session.execute(select(ExportRun.export_id, ExportRun.outcome).order_by(ExportRun.id)))
        result: dict[str, list[str]] = {name: [] for name in names.values()}
        for run in runs:
            result[names[run.export_id]].append(run.outcome)
    return result


def test_an_export_added_by_the_command_and_one_by_sql_both_run(
    app: App, worker: Any, out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["exports", "add", "by-command", "--format", "csv", "--path", "cmd/products.csv", "--interval", "10m"])
        == 0
    )
    assert "export by-command added" in capsys.readouterr().out
    with app.db.transaction() as session:  # as docs/pipelines/exports.md says: the other columns have defaults
        session.execute(text("INSERT INTO exports (name, format, path) VALUES ('by-sql', 'jsonl', 'products.jsonl')"))

    assert discover(REGISTRY.get("exports")).enqueued == 0, "a new export waits its initial delay"
    app.clock.advance(seconds=31)
    assert discover(REGISTRY.get("exports")).enqueued == 2
    wait_until(lambda: _outcomes(app) == {"by-command": ["succeeded"], "by-sql": ["succeeded"]}, timeout=30)
    assert len((out / "cmd" / "products.csv").read_text().splitlines()) == 26
    assert len((out / "products.jsonl").read_text().splitlines()) == 25

    with app.db.transaction() as session:  # its own interval (10 min), the other the setting's (5 min)
        rows = {e.name: e for e in session.scalars(select(Export))}
    assert rows["by-command"].interval_seconds == 600 and rows["by-sql"].interval_seconds is None
    app.clock.advance(seconds=300)
    assert discover(REGISTRY.get("exports")).enqueued == 1

    assert main(["exports", "list"]) == 0
    listing = capsys.readouterr().out
    assert "by-command  csv  cmd/products.csv  every 600s" in listing and "by-sql  jsonl" in listing
    assert main(["exports", "remove", "by-command"]) == 0
    with app.db.transaction() as session:
        assert session.scalars(select(Export.name)).all() == ["by-sql"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["add", "x", "--format", "csv", "--path", "../escape.csv"], "escapes its directory"),
        (["add", "x", "--format", "csv", "--path", "/tmp/abs.csv"], "escapes its directory"),
        (["add", "x", "--format", "csv", "--path", "x.csv", "--interval", "0"], "--interval '0'"),
        (["add", "x y", "--format", "csv", "--path", "x.csv"], "export name 'x y'"),
        (["remove", "nope"], "no export named 'nope'"),
    ],
)
def test_mistakes_are_one_line(app: App, argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exports", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err, err


def test_a_second_export_of_the_same_name_is_one_line(app: App, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exports", "add", "twice", "--format", "csv", "--path", "a.csv"]) == 0
    assert main(["exports", "add", "twice", "--format", "csv", "--path", "b.csv"]) == 2
    assert "an export named 'twice' exists already" in capsys.readouterr().err


def test_the_docs_examples_define_exports_that_run(app: App, worker: Any, out: Path) -> None:
    """docs/pipelines/exports.md's examples, as written: the commands and the SQL insert."""
    commands = docs.block("docs/pipelines/exports.md", "sh", "backlane exports add")
    sql = docs.block("docs/pipelines/exports.md", "sql", "INSERT INTO exports")
    lines = [shlex.split(line) for line in commands.splitlines() if line.strip()]
    add = next(line for line in lines if line[1:3] == ["exports", "add"])
    assert main(add[1:]) == 0 and main(["exports", "list"]) == 0
    with app.db.transaction() as session:
        session.execute(text(sql.strip().rstrip(";")))

    assert discover(REGISTRY.get("exports")).enqueued == 0, "first seen: scheduled after the initial delay"
    app.clock.advance(seconds=31)
    assert discover(REGISTRY.get("exports")).enqueued == 2
    wait_until(lambda: _outcomes(app) == {"products": ["succeeded"], "products-feed": ["succeeded"]}, timeout=30)
    assert (out / "products.csv").exists() and (out / "feeds" / "products.jsonl").exists()
    remove = next(line for line in lines if line[1:3] == ["exports", "remove"])
    assert main(remove[1:]) == 0
