"""scripts/test passes its arguments to pytest without doubling the verbosity: `scripts/test -q`
is pytest -q (not -qq, which hides the summary line)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("flag", [[], ["-q"], ["-v"]])
def test_scripts_test_keeps_the_summary_line(flag: list[str]) -> None:
    env = {**os.environ, "BACKLANE_BOOTSTRAP_SKIP_APT": "1"}
    result = subprocess.run(
        [str(ROOT / "scripts" / "test"), *flag, "tests/unit/test_contracts.py", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines and " passed" in lines[-1], f"no summary line:\n{result.stdout}"
    if flag == ["-v"]:
        assert "PASSED" in result.stdout, "-v replaces the quiet default"
