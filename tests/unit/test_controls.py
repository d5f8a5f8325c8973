"""Runtime settings validated as the environment's are; each process's view of the controls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dramatiq
import pytest

from actors.catalog.settings import CatalogSettings
from backlane.core import controls as core
from backlane.core.processing import PAUSED_OPTION, wait_while_paused
from backlane.settings import PipelineSettings, SettingsError


def test_an_override_is_validated_by_the_sections_own_class_naming_its_variable() -> None:
    base = CatalogSettings()
    changed = core.apply_overrides("catalog", base, {"limiters.catalog.calls": 5, "max_concurrent": "2"})
    assert isinstance(changed, CatalogSettings)
    assert changed.limiters["catalog"].calls == 5 and changed.max_concurrent == 2
    assert base.limiters["catalog"].calls == 2, "the environment's section is never changed"
    with pytest.raises(SettingsError, match="BACKLANE_CATALOG__LIMITERS__CATALOG__CALLS"):
        core.apply_overrides("catalog", base, {"limiters.catalog.calls": 0})
    with pytest.raises(SettingsError, match="BACKLANE_CATALOG__TICK"):
        core.apply_overrides("catalog", base, {"tick": "every minute"})


def test_only_the_declared_runtime_fields_may_change() -> None:
    with pytest.raises(SettingsError, match="not a setting changed at runtime"):
        core.apply_overrides("catalog", CatalogSettings(), {"base_url": "http://elsewhere"})
    with pytest.raises(SettingsError, match="no 'nope'"):
        core.apply_overrides("catalog", CatalogSettings(), {"limiters.nope.calls": 3})
    keys = core.concrete_keys(CatalogSettings())
    assert "limiters.catalog.calls" in keys and "sections.brands.interval_minutes" in keys
    assert core.concrete_keys(PipelineSettings())[:2] == ["tick", "max_items"]


def test_values_typed_by_an_operator_are_json_else_text() -> None:
    assert core.parse_value("5") == 5 and core.parse_value("null") is None
    assert core.parse_value("*/5 * * * *") == "*/5 * * * *"


def test_a_process_keeps_the_last_controls_it_read_when_the_database_goes_away(monkeypatch: Any) -> None:
    pause = core.PauseState("orders", "", datetime.now(UTC), "cli:alice", "")
    database: list[Any] = [object()]
    controls = core.Controls(lambda: database[0], refresh_seconds=0.0)
    monkeypatch.setattr(core, "read_state", lambda _db: core.ControlState({("orders", ""): pause}, {}, 0.0))
    assert controls.state().paused("orders") is pause

    def away(_db: Any) -> Any:
        raise ConnectionError("database away")

    monkeypatch.setattr(core, "read_state", away)
    assert controls.state().paused("orders") is pause, "an outage never lifts a pause"
    database[0] = None
    assert controls.state().paused("orders") is pause


def test_a_paused_item_waits_longer_each_time_up_to_the_recheck(monkeypatch: Any) -> None:
    from dramatiq.middleware import CurrentMessage

    message = dramatiq.Message(queue_name="q", actor_name="a", args=(), kwargs={}, options={})
    monkeypatch.setattr(CurrentMessage, "get_current_message", lambda: message)
    delays = []
    for _ in range(6):
        with pytest.raises(dramatiq.Retry) as raised:
            wait_while_paused("orders", "orders", 10.0)
        delays.append(raised.value.delay)
    assert delays == [1000, 2000, 4000, 8000, 10000, 10000]
    assert message.options[PAUSED_OPTION] == 6
