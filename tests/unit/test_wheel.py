"""The wheel production installs holds the runtime only: backlane, actors, contracts and
scheduler; no simulator, private RabbitMQ/PostgreSQL node, process stack or demo."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_contains_no_dev_tooling(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT), "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = tmp_path.glob("backlane-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"backlane", "actors", "contracts", "scheduler"}
    dev = [
        n for n in names if any(word in n for word in ("devtools", "simulator", "infra/", "demo", "sample", "stack"))
    ]
    assert not dev, dev
    assert "backlane/app.py" in names and "backlane/core/registry.py" in names
