from __future__ import annotations

import os
import re
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
        ("BACKLANE_LOG_REPEAT_SECONDS", "-1"),
        ("BACKLANE_LOG_REPEAT_SECONDS", "1e400"),  # inf: every kind written once, for ever
        ("BACKLANE_LOG_REPEAT_SECONDS", "nan"),
        ("BACKLANE_BROKER__HEARTBEAT_SECONDS", "0"),  # no heartbeats: a frozen worker holds its messages
        ("BACKLANE_BROKER__HEARTBEAT_SECONDS", "601"),
        ("BACKLANE_BROKER__URL", "amqp://guest:guest@127.0.0.1:5672/%2F?heartbeat=0"),
    ],
)
def test_a_bad_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
        load_section("orders", PipelineSettings)  # a pipeline's section: read by its name
    assert variable in str(raised.value)


def test_the_heartbeat_is_asked_for_unless_a_url_names_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from backlane.messaging.links import url_parameters

    monkeypatch.delenv("BACKLANE_BROKER__HEARTBEAT_SECONDS", raising=False)
    assert load_settings().broker.heartbeat_seconds == 15
    one, two = url_parameters("amqp://a/%2F?heartbeat=5;amqp://b/%2F", 15)
    assert (one.heartbeat, two.heartbeat) == (5, 15)
    assert url_parameters("amqp://a/%2F")[0].heartbeat is None  # None: RabbitMQ's proposal


def test_secrets_do_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    from actors.orders.settings import OrdersSettings

    monkeypatch.setenv("BACKLANE_BROKER__URL", "amqp://user:hunter2-secret@rabbit:5672/%2F")
    monkeypatch.setenv("BACKLANE_ORDER_API__API_KEY", "sk-hunter2-secret")
    settings = load_settings()
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    orders = load_section("orders", OrdersSettings)
    assert orders.api_key is not None and orders.api_key.get_secret_value() == "sk-hunter2-secret"
    assert "hunter2" not in repr(orders) and "hunter2" not in str(orders.model_dump())


def test_an_api_moved_into_its_pipelines_section_still_reads_its_former_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """BACKLANE_ORDER_API__* and BACKLANE_PRODUCT_API__* (global sections before the pipelines
    had folders) still set orders' and exports' API; the section's own variables win."""
    from actors.exports.settings import ExportsSettings
    from actors.orders.settings import OrdersSettings

    for name in [key for key in os.environ if key.startswith(("BACKLANE_ORDERS__", "BACKLANE_EXPORTS__"))]:
        monkeypatch.delenv(name)
    assert load_section("orders", OrdersSettings).base_url == "http://127.0.0.1:8085"
    assert load_section("exports", ExportsSettings).timeout == 30.0  # the product API's own default
    monkeypatch.setenv("BACKLANE_ORDER_API__BASE_URL", "http://old.example:1")
    monkeypatch.setenv("BACKLANE_PRODUCT_API__TIMEOUT", "7")
    assert load_section("orders", OrdersSettings).base_url == "http://old.example:1"
    assert load_section("exports", ExportsSettings).timeout == 7.0
    monkeypatch.setenv("BACKLANE_ORDERS__BASE_URL", "http://new.example:2")
    assert load_section("orders", OrdersSettings).base_url == "http://new.example:2"
    monkeypatch.setenv("BACKLANE_PRODUCT_API__TIMEOUT", "-1")
    with pytest.raises(SettingsError) as raised:
        load_section("exports", ExportsSettings)
    assert "BACKLANE_PRODUCT_API__TIMEOUT" in str(raised.value), "a bad value names the variable it came from"


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


def test_an_application_module_that_does_not_exist_is_a_setting_named() -> None:
    """`backlane --app typo ...` or BACKLANE_APP=typo: one line naming the setting, not an unexpected error."""
    from backlane.app import load_app

    with pytest.raises(SettingsError, match=re.escape("BACKLANE_APP (or --app): no module 'no_such_app_module'")):
        load_app("no_such_app_module")
