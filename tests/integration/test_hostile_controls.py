"""What an operator (or a script on their behalf) may type at a control: a value nested past
Python's recursion limit, a key of a megabyte, a command line that is not UTF-8, a NUL. Each is
one refusal or a cleaned record, audited, on both databases (PostgreSQL refuses NUL in text)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from backlane.core.controls import read_state
from backlane.core.registry import REGISTRY
from backlane.errors import Problem
from backlane.operations import audit, controls
from tests.integration.conftest import App
from tests.integration.test_dashboard_app import csrf_of, dashboard


def test_a_value_nested_too_deeply_is_one_refusal_and_audited(app: App) -> None:
    deep = "[" * 200_000 + "]" * 200_000
    with pytest.raises(Problem, match="nested too deeply") as refused:
        controls.set_setting(REGISTRY, app.runtime, "cli:ops", "orders", "max_items", deep)
    assert "\n" not in str(refused.value)
    assert read_state(app.db).overrides_of("orders") == {}
    [event] = audit.events(app.db, limit=5).events
    assert event.outcome == "refused" and event.action == "set"
    assert len(event.detail) <= audit.MAX_TEXT


def test_a_huge_key_is_named_short_in_its_refusal(app: App) -> None:
    with pytest.raises(Problem, match="not a setting changed at runtime") as refused:
        controls.set_setting(REGISTRY, app.runtime, "cli:ops", "orders", "x" * 1_000_000, "5")
    assert len(str(refused.value)) < 2000


def test_a_user_name_and_a_command_line_that_are_not_utf8_are_recorded_cleaned(app: App, database_url: str) -> None:
    env = {**os.environ, "BACKLANE_DATABASE__URL": database_url, "LOGNAME": "mal\udcfflory", "USER": "mal\udcfflory"}
    command = [sys.executable, "-m", "backlane.cli", "pause", "orders", "--reason", "night\udcff work"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)  # argv bytes b"\xff"
    assert done.returncode == 0 and done.stderr == "", done.stderr
    pause = read_state(app.db).paused("orders")
    assert pause is not None and (pause.paused_by, pause.reason) == ("cli:mal?lory", "night? work")
    [event] = audit.events(app.db, limit=5).events
    assert (event.actor, event.detail) == ("cli:mal?lory", "night? work")
    audit.record(app.db, app.clock.now(), "cli:x\x00y", "trigger", "orders\udcff", detail="a\x00b")
    [newest] = audit.events(app.db, search="trigger").events
    assert (newest.actor, newest.target, newest.detail) == ("cli:xy", "orders?", "ab")


@pytest.mark.parametrize("path", ["/pipelines/orders?q=%00", "/audit?q=%00", "/pipelines/orders?q=a%00b&status=failed"])
def test_a_nul_in_a_dashboard_search_is_no_error(app: App, path: str) -> None:
    with dashboard(app) as client:
        answer = client.get(path)
        assert answer.status_code == 200, answer.text[-500:]


def test_a_nul_in_a_dashboard_reason_is_recorded_cleaned(app: App) -> None:
    with dashboard(app) as client:
        token = csrf_of(client, "/pipelines/orders")
        done = client.post("/pipelines/orders/pause", data={"csrf": token, "reason": "night\x00 work"})
        assert done.status_code == 303, done.text[-500:]
    pause = read_state(app.db).paused("orders")
    assert pause is not None and pause.reason == "night work"
