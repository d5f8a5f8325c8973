from __future__ import annotations

import os
import subprocess
import sys

import pytest

from backlane.core.config import load_section
from backlane.settings import PipelineSettings, SettingsError, load_settings


def test_defaults_match_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("BACKLANE_"):
            monkeypatch.delenv(key)
    settings = load_settings()
    assert load_section("orders", PipelineSettings).tick == "* * * * *"
    assert settings.database.url.get_secret_value().startswith("sqlite:///")


def test_nested_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKLANE_ORDERS__MAX_ITEMS", "42")
    monkeypatch.setenv("BACKLANE_BROKER__QUEUE_TYPE", "quorum")
    settings = load_settings()
    assert (load_section("orders", PipelineSettings).max_items, settings.broker.queue_type) == (42, "quorum")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BACKLANE_ORDERS__MAX_ITEMS", "-3"),
        ("BACKLANE_ORDERS__TICK", "every minute"),
        ("BACKLANE_BROKER__QUEUE_TYPE", "fast"),
        ("BACKLANE_RETRIES__MIN_BACKOFF_MS", "soon"),
    ],
)
def test_a_bad_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
        load_section("orders", PipelineSettings)  # a pipeline's section: read by its name
    assert variable in str(raised.value)


def test_secrets_do_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKLANE_BROKER__URL", "amqp://user:hunter2-secret@rabbit:5672/%2F")
    monkeypatch.setenv("BACKLANE_ORDER_API__API_KEY", "sk-hunter2-secret")
    settings = load_settings()
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())


def test_worker_start_up_stops_on_a_bad_setting_and_names_it() -> None:
    env = {**os.environ, "BACKLANE_ORDERS__LEASE_SECONDS": "-1"}
    result = subprocess.run(
        [sys.executable, "-m", "dramatiq", "actors", "scheduler", "--processes", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "BACKLANE_ORDERS__LEASE_SECONDS" in result.stdout + result.stderr
