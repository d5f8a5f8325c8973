"""A held catalog section says so: by what, until when, and its endpoint limiter's calls left
(the rows `backlane status --json` and /health show). Real database, both kinds."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from backlane.cli import main
from backlane.core.registry import Registered
from backlane.operations.status import _health_line
from backlane.resilience import RateLimiter
from tests.integration.catalog_support import catalog_pipeline  # noqa: F401  (the `catalog` fixture)
from tests.integration.conftest import App


def _rows(catalog: Registered) -> dict[str, dict[str, object]]:
    assert catalog.pipeline.health is not None
    return {row.name: row.details for row in catalog.pipeline.health(catalog.context())}


def test_a_section_held_by_its_endpoint_shows_the_hold_and_when_it_ends(app: App, catalog: Registered) -> None:
    config = app.config("catalog").with_limiter("catalog", calls=2).with_limiter("categories", calls=2)
    app.set_config("catalog", config)
    now = app.clock.now()
    limiter = RateLimiter(app.db, app.clock)
    limiter.hold_for("limiter:catalog", 1800, "wait for 1800 seconds")  # the provider's answer
    for _ in range(2):  # categories' own budget used up: free again one hour after its first call
        limiter.acquire("limiter:categories", 2, 3600)

    rows = _rows(catalog)
    brands, categories, lots = rows["brands"], rows["categories"], rows["lots"]
    assert (brands["held_by"], brands["limiter"], brands["due"]) == ("rate limit catalog", "catalog", False)
    held = datetime.fromisoformat(str(brands["held_until"]))
    assert abs(held - (now + timedelta(seconds=1800))) < timedelta(seconds=1)
    assert brands["next_due"] == brands["held_until"], "next due is when it can really run"
    assert brands["limiter_calls_left"] == 2
    assert (categories["held_by"], categories["limiter_calls_left"], categories["due"]) == (
        "rate limit categories",
        0,
        False,
    )
    assert abs(datetime.fromisoformat(str(categories["held_until"])) - (now + timedelta(hours=1))) < timedelta(
        seconds=1
    )
    assert (lots["held_by"], lots["held_until"], lots["due"]) == (None, None, True)

    app.clock.advance(seconds=1801)  # the provider's wait is over: brands is due, categories still held
    rows = _rows(catalog)
    assert (rows["brands"]["held_by"], rows["brands"]["due"]) == (None, True)
    assert rows["categories"]["held_by"] == "rate limit categories"


def test_trigger_says_when_a_held_section_will_really_refresh(
    app: App, catalog: Registered, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors.catalog import trigger_section

    # The command's schema check reads BACKLANE_DATABASE__URL; the test's database is installed directly.
    monkeypatch.setattr("backlane.operations.actions.require_schema", lambda runtime: None)

    RateLimiter(app.db, app.clock).hold_for("limiter:categories", 59 * 60, "wait for 3540 seconds")
    assert main(["trigger", "catalog", "categories"]) == 0
    said = capsys.readouterr().out.strip()
    assert said.startswith("catalog categories: requested, but held by rate limit categories until "), said
    assert "(in 59 min); it refreshes then" in said
    assert trigger_section(catalog.context(), "categories") == [], "no message that would only wait"
    assert main(["trigger", "catalog", "brands"]) == 0
    assert "catalog brands: 1 item(s) queued" in capsys.readouterr().out


def test_status_lines_show_the_hold_and_pipelines_the_catalogs_concurrency(
    app: App, catalog: Registered, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors.catalog.health import section_rows

    monkeypatch.setattr("backlane.operations.actions.require_schema", lambda runtime: None)
    RateLimiter(app.db, app.clock).hold_for("limiter:catalog", 30 * 60, "wait for 1800 seconds")
    brands = next(row for row in section_rows(app.db, app.clock, app.config("catalog")) if row.name == "brands")
    line = _health_line(brands)
    assert line.startswith("  brands"), line
    assert "held by rate limit catalog for 30m" in line or "held by rate limit catalog for 29m" in line, line

    assert main(["pipelines"]) == 0
    lines = {row.split()[0]: row for row in capsys.readouterr().out.splitlines()[1:]}
    assert "3 at once" in lines["catalog"], "the catalog runs at most max_concurrent sections at once"
    assert f"{app.config('orders').max_items}/tick" in lines["orders"]
