"""/health says "not migrated" for a reachable database without backlane's schema (not
"unreachable", not healthy), and never creates a SQLite file it was pointed at."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import SecretStr

from backlane.core.registry import REGISTRY
from backlane.core.runtime import Runtime
from backlane.operations.endpoint import health_report
from tests.integration.conftest import App

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _with_database(app: App, url: str) -> Runtime:
    settings = app.runtime.settings
    database = settings.database.model_copy(update={"url": SecretStr(url)})
    return Runtime(settings=settings.model_copy(update={"database": database}), broker=app.broker, clock=app.clock)


def test_health_of_a_database_without_schema_is_not_migrated(app: App, tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    code, body = health_report(REGISTRY, _with_database(app, f"sqlite:///{empty}"))
    assert code == 503
    assert body["status"] == "unhealthy"
    assert body["database"]["state"] == "not migrated" and "backlane migrate" in body["database"]["error"]
    assert body["broker"]["health"] == "healthy"

    missing = tmp_path / "missing.db"
    code, body = health_report(REGISTRY, _with_database(app, f"sqlite:///{missing}"))
    assert code == 503 and body["database"]["state"] == "not migrated"
    assert not missing.exists(), "asking about a database never creates it"


def test_health_of_a_migrated_database_is_healthy(app: App) -> None:
    code, body = health_report(REGISTRY, app.runtime)
    assert code == 200
    assert body["database"] == {"health": "healthy", "state": "ok", "revision": body["database"]["revision"]}
