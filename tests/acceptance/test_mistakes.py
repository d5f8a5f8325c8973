"""Every mistake ends in one line naming its cause and fix, with the right exit status, within 5 s.

The cases are the issue's list (tests/acceptance/mistakes.py), each run as the real
command (`backlane ...`, `dramatiq actors scheduler`, `periodiq scheduler`) against
the session's private RabbitMQ node, a port where nothing listens, and SQLite
databases with and without the schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.mistakes import MISTAKES, Mistake, Place, check


@pytest.fixture(scope="module")
def place(rabbitmq: Any, tmp_path_factory: pytest.TempPathFactory) -> Place:
    if not rabbitmq.is_running():
        rabbitmq.start()
    return Place(rabbitmq.amqp_url, rabbitmq.management_url, tmp_path_factory.mktemp("mistakes"))


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.key for m in MISTAKES])
def test_a_mistake_is_one_line_naming_the_fix(mistake: Mistake, place: Place, tmp_path: Path) -> None:
    outcome = mistake.run(place, tmp_path)
    assert not check(mistake, outcome), (check(mistake, outcome), outcome.output)
    assert not (tmp_path / "backlane.db").exists(), "no command creates a database it was not asked to"


def test_ctrl_c_at_the_purge_prompt_is_130_without_a_traceback(place: Place, tmp_path: Path) -> None:
    import sys

    from tests.acceptance.test_status_health import _pty_run

    argv = [sys.executable, "-m", "backlane.cli", "dead-letters", "purge"]
    code, output = _pty_run(argv, place.env(), seconds=3)
    assert "type 'purge' to confirm" in output, output
    assert code == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output


def test_debug_adds_the_traceback_behind_the_line(place: Place, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = place.env(BACKLANE_BROKER__URL=place.dead_amqp_url)
    argv = [sys.executable, "-m", "backlane.cli", "--debug", "trigger", "orders"]
    result = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("backlane: RabbitMQ at"), result.stderr
