"""The catalog's pure parts: due and next-due, claim planning, health, defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from actors.catalog.schedule import (
    DEGRADED,
    DISABLED,
    HEALTHY,
    UNHEALTHY,
    SectionState,
    degraded_after,
    is_due,
    may_start,
    next_due,
    plan_claims,
    section_health,
)
from actors.catalog.sections import SECTIONS, sources
from actors.catalog.settings import CATALOG_SECTION_DEFAULTS, CATALOG_SOURCE_DEFAULTS, CatalogSettings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def state(name: str, interval_min: float = 5, **kw: object) -> SectionState:
    return SectionState(name=name, enabled=kw.pop("enabled", True), interval=interval_min * MIN, **kw)  # type: ignore[arg-type]


def test_due_when_the_interval_has_passed_since_the_last_success() -> None:
    assert is_due(state("a"), NOW), "never succeeded: due at once"
    assert not is_due(state("a", last_success_at=NOW - 4 * MIN), NOW)
    assert is_due(state("a", last_success_at=NOW - 5 * MIN), NOW)
    assert next_due(NOW, 5 * MIN) == NOW + 5 * MIN
    assert is_due(state("a", last_success_at=NOW, requested_at=NOW), NOW), "requested: due whatever the interval"


def test_plan_claims_fills_only_free_slots_most_overdue_first() -> None:
    states = [
        state("running", lease_until=NOW + MIN),
        state("late", last_success_at=NOW - 50 * MIN),
        state("later", last_success_at=NOW - 90 * MIN),
        state("fresh", last_success_at=NOW - MIN),
        state("never"),
        state("off", enabled=False),
        state("waiting", hold_until=NOW + MIN),
    ]
    assert plan_claims(states, NOW, 3) == ["never", "later"]
    assert plan_claims(states, NOW, 1) == []
    assert plan_claims(states, NOW, 10) == ["never", "later", "late"]


def test_an_expired_lease_frees_its_slot_and_its_section() -> None:
    states = [state("crashed", lease_until=NOW - MIN), state("other")]
    assert plan_claims(states, NOW, 1) == ["crashed"]


def test_a_delayed_refresh_may_start_only_within_max_concurrent() -> None:
    states = [state("a", lease_until=NOW + MIN), state("b", lease_until=NOW + MIN), state("c")]
    assert may_start(states, "c", NOW, 3)
    assert not may_start(states, "c", NOW, 2)
    assert may_start(states, "a", NOW, 2), "its own lease does not count against it"


@pytest.mark.parametrize(
    ("interval_min", "expected_min"),
    [(5, 30), (10, 30), (15, 45), (30, 90), (120, 360)],
)
def test_degraded_after_is_the_larger_of_30_minutes_and_three_intervals(interval_min: int, expected_min: int) -> None:
    assert degraded_after(interval_min * MIN, 30 * MIN, 3) == expected_min * MIN


def health(last_success_at: datetime | None, interval_min: float = 5, **kw: object) -> str:
    options = {"enabled": True, "breaker_open": False, **kw}
    return section_health(
        last_success_at=last_success_at,
        interval=interval_min * MIN,
        now=NOW,
        floor=30 * MIN,
        factor=3,
        **options,  # type: ignore[arg-type]
    )


def test_section_health() -> None:
    assert health(None) == UNHEALTHY
    assert health(NOW - 30 * MIN) == HEALTHY
    assert health(NOW - 31 * MIN) == DEGRADED
    assert health(NOW - 89 * MIN, interval_min=30) == HEALTHY
    assert health(NOW - 91 * MIN, interval_min=30) == DEGRADED
    assert health(NOW - MIN, breaker_open=True) == UNHEALTHY
    assert health(None, enabled=False) == DISABLED, "a disabled section is not expected to be fresh"


def test_settings_cover_every_section_and_source_with_the_designed_defaults() -> None:
    config = CatalogSettings()
    assert set(config.sections) == set(SECTIONS) == set(CATALOG_SECTION_DEFAULTS)
    assert set(config.sources) == set(sources()) == set(CATALOG_SOURCE_DEFAULTS)
    assert {n: s.interval_minutes for n, s in config.sections.items()} == {
        "erp_stock": 5,
        "eshop_stock": 10,
        "stock_taking": 10,
        "transport": 15,
        "lots": 15,
        "sales": 30,
        "consumed_materials": 30,
        "purchase_history": 60,
        "attributes": 60,
        "suppliers": 120,
        "categories": 30,
        "brands": 30,
    }
    retention = {n: s.retention_days for n, s in config.sections.items() if s.retention_days}
    assert retention == {"sales": 365, "purchase_history": 365, "consumed_materials": 720}
    assert {n for n, s in SECTIONS.items() if s.history} == set(retention)
    assert (config.max_concurrent, config.refresh_time_limit_seconds) == (3, 600)
    assert (config.breaker_failure_threshold, config.breaker_open_seconds) == (3, 30)
    limits = {name: (limiter.calls, limiter.window_seconds) for name, limiter in config.limiters.items()}
    assert limits == {"catalog": (2, 3600), "categories": (2, 3600)}
    assert {n: s.limiter_name for n, s in SECTIONS.items() if s.source == "catalog"} == {
        "categories": "categories",
        "brands": "catalog",
    }
    for name in ("categories", "brands"):  # each default interval fits its own endpoint's limit
        limiter = config.limiters[SECTIONS[name].limiter_name]
        assert limiter.calls is not None
        assert config.sections[name].interval_minutes * 60 * limiter.calls >= limiter.window_seconds
    assert config.lease_seconds > config.refresh_time_limit_seconds


def test_one_env_var_changes_one_field_of_one_section(monkeypatch: pytest.MonkeyPatch) -> None:
    from backlane.core.config import load_section
    from backlane.settings import SettingsError

    monkeypatch.setenv("BACKLANE_CATALOG__SECTIONS__SALES__ENABLED", "false")
    monkeypatch.setenv("BACKLANE_CATALOG__SOURCES__ERP__BASE_URL", "http://erp.internal")
    config = load_section("catalog", CatalogSettings)
    assert config.sections["sales"].enabled is False
    assert config.sections["sales"].retention_days == 365 and config.sections["sales"].interval_minutes == 30
    assert config.sources["erp"].base_url == "http://erp.internal"
    assert config.limiters["catalog"].calls == 2
    monkeypatch.setenv("BACKLANE_CATALOG__LIMITERS__CATEGORIES__CALLS", "6")
    config = load_section("catalog", CatalogSettings)
    assert (config.limiters["categories"].calls, config.limiters["catalog"].calls) == (6, 2)
    monkeypatch.setenv("BACKLANE_CATALOG__SECTIONS__SALEZ__ENABLED", "false")
    with pytest.raises(SettingsError, match="BACKLANE_CATALOG__SECTIONS"):
        load_section("catalog", CatalogSettings)
