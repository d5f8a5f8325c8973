"""Each registration's settings section comes from its declaration, read from
``BACKLANE_<NAME>__*``: defaults as the design says, and two registrations of one
handler configured apart (no settings subclass per registration)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from backlane.core.config import load_section
from backlane.core.registry import REGISTRY


def section(name: str) -> Any:
    pipeline = REGISTRY.get(name).pipeline
    return load_section(name, pipeline.config, pipeline.defaults)


@pytest.fixture
def clean_env(app_broker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("BACKLANE_") and "__" in key and key.split("__")[0] != "BACKLANE_BROKER":
            monkeypatch.delenv(key)


def test_defaults_match_the_design(clean_env: None) -> None:
    tracks, exports = section("tracks"), section("exports")
    assert (tracks.tick, tracks.max_items, tracks.enabled) == ("*/5 * * * *", 50, True)
    assert (exports.interval_seconds, exports.initial_delay_seconds, exports.health_timeout_seconds) == (300, 30, 10)
    assert (exports.max_retries, exports.min_backoff_ms, exports.max_backoff_ms) == (2, 30_000, 300_000)
    assert (exports.breaker_failure_threshold, exports.breaker_open_seconds) == (3, 30)
    assert (section("staging_acme").max_items, section("staging_globex").max_items) == (5, 10)


def test_each_staging_section_is_configured_on_its_own(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKLANE_STAGING_ACME__TICK", "*/2 * * * *")
    monkeypatch.setenv("BACKLANE_STAGING_GLOBEX__BASE_URL", "http://globex.example")
    acme, globex = section("staging_acme"), section("staging_globex")
    assert (acme.tick, acme.max_items) == ("*/2 * * * *", 5)
    assert (globex.base_url, globex.max_items) == ("http://globex.example", 10)
    assert acme.base_url != "http://globex.example"
