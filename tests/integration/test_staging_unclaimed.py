"""A staging batch that names no registered processor is counted and warned about, once per change,
instead of waiting forever unseen. Real database, both kinds."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import insert

from actors.staging.models import StagingBatch
from backlane.core.discovery import discover
from backlane.core.registry import REGISTRY
from tests.integration.conftest import App


def _batch(app: App, processor: str) -> None:
    now = app.clock.now()
    row = {"processor": processor, "payload": {"urls": []}, "status": "pending", "created_at": now, "updated_at": now}
    with app.db.transaction() as session:
        session.execute(insert(StagingBatch), [row])


def test_batches_no_registration_claims_are_counted_and_warned_about(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    import actors.staging

    actors.staging._warned.clear()
    for section in ("staging_acme", "staging_globex"):
        app.configure(section, base_url=app.simulator.url, timeout=5.0)
    _batch(app, "staging_acme")
    _batch(app, "staging_acmee")
    _batch(app, "staging_acmee")
    acme = REGISTRY.get("staging_acme")

    with caplog.at_level(logging.WARNING):
        assert discover(acme).enqueued == 1
        discover(REGISTRY.get("staging_globex"))
        discover(acme)
    warnings = [r.getMessage() for r in caplog.records if "no registration claims" in r.getMessage()]
    assert warnings == [
        "staging batches no registration claims: 2 for 'staging_acmee' (registered: staging_acme, staging_globex)"
    ], "one warning, not one per tick"
    assert acme.pipeline.stats is not None
    assert acme.pipeline.stats(acme.context())["unclaimed"] == 2
