"""Shared helpers of the catalog integration tests: the configured pipeline and
running its refreshes in the test thread."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from actors.catalog.models import CatalogSection
from backlane.core.registry import REGISTRY, Registered
from tests.integration.conftest import App


@pytest.fixture(name="catalog")
def catalog_pipeline(app: App) -> Registered:
    app.configure("catalog", base_url=app.simulator.url)
    config = app.config("catalog")
    set_catalog(app, config.with_limiter("catalog", calls=None).with_limiter("categories", calls=None))
    return REGISTRY.get("catalog")


def set_catalog(app: App, config: Any) -> None:
    app.set_config("catalog", config)


def only_sections(app: App, *names: str) -> None:
    config = app.config("catalog")
    for name in config.sections:
        config = config.with_section(name, enabled=name in names)
    set_catalog(app, config)


def run_due(app: App, catalog: Registered) -> list[list[str]]:
    """Discover and refresh in this thread until nothing is due; the claimed names per round."""
    rounds = []
    while items := catalog.pipeline.fetch(catalog.context(), 500):
        assert len(items) <= app.config("catalog").max_concurrent
        rounds.append([item["section"] for item in items])
        for item in items:
            catalog.pipeline.process(catalog.context(), item)
    return rounds


def trigger(catalog: Registered, name: str) -> None:
    from actors.catalog import trigger_section

    [item] = trigger_section(catalog.context(), name)
    catalog.pipeline.process(catalog.context(), item)


def section(app: App, name: str) -> CatalogSection:
    with app.db.transaction() as session:
        row = session.get(CatalogSection, name)
        assert row is not None
        return row


def admin(app: App, name: str, change: dict[str, Any]) -> None:
    httpx.post(f"{app.simulator.url}/_admin/catalog/{name}", json=change, timeout=5).raise_for_status()
