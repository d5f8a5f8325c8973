"""The monitoring folder for its tests: the metric series backlane exports, the metric names a
PromQL expression reads, and promtool.

:func:`exported_series` asks the code, not a list: a fresh interpreter (prometheus_client picks
its multiprocess mode when first imported) builds the worker's metrics middleware as a worker
process does, records one of each of backlane's observations, and reads back every family's
series names, with the state gauges the endpoint adds when scraped.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "monitoring"
RULES = MONITORING / "prometheus" / "alerts.yml"
RULE_TESTS = MONITORING / "prometheus" / "alerts.test.yml"
DASHBOARD = MONITORING / "grafana" / "backlane.json"

#: What Prometheus itself adds to every target.
PROMETHEUS_SERIES = frozenset({"up"})

_APT = "apt-get update && apt-get install -y prometheus (or: scripts/bootstrap --with-prometheus)"

_SERIES_SCRIPT = r"""
import json, os, sys
os.environ["BACKLANE_WORKER__METRICS_DIR"] = sys.argv[1]
from dramatiq.brokers.stub import StubBroker
from backlane.core.health import Health, HealthRow
from backlane.operations import metrics
from backlane.settings import Settings
middleware = metrics.build_metrics_middleware(Settings(), lambda: 0)
middleware.after_process_boot(StubBroker())
names = set()
ours = [metrics._items, metrics._durations, metrics._dead_letters, metrics._ticks]
for collector in [*vars(middleware).values(), *ours]:
    if hasattr(collector, "describe"):
        for family in collector.describe():
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
            names |= {family.name + suffix for suffix in suffixes}
state = metrics.state_metrics(
    [{"name": "b", "state": "open", "consecutive_failures": 3}],
    {"p": [HealthRow("r", Health.DEGRADED)]},
    {"q": 1},
).decode()
names |= {line.split("{")[0].split(" ")[0] for line in state.splitlines() if line and not line.startswith("#")}
print(json.dumps(sorted(names)))
"""


@functools.lru_cache(maxsize=1)
def exported_series() -> frozenset[str]:
    """Every series name a worker's /metrics can serve (histograms as _bucket, _sum and _count)."""
    with tempfile.TemporaryDirectory() as directory:
        done = subprocess.run(
            [sys.executable, "-c", _SERIES_SCRIPT, directory], capture_output=True, text=True, cwd=REPO, timeout=60
        )
    assert done.returncode == 0, done.stderr
    return frozenset(json.loads(done.stdout))


#: PromQL words that are not metric names.
_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "and",
        "or",
        "unless",
        "inf",
        "nan",
    }
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w$:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` reads: identifiers that are not functions, keywords, label names,
    grouping labels, durations or Grafana's ``$variables``."""
    expr = _STRINGS.sub('""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries' durations
    expr = _GROUPING.sub("", expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)
    expr = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?[smhdwy]*\b", "", expr)  # numbers, offsets' durations
    return {name for name, call in _NAME.findall(expr) if not call and name.lower() not in _KEYWORDS}


def promtool() -> str:
    """promtool's path; a missing one fails the test naming the command that installs it."""
    found = shutil.which("promtool")
    assert found, f"promtool is not installed (Debian's prometheus package): {_APT}"
    return found


def prometheus() -> str:
    """The Prometheus server's path; a missing one fails the test naming the command that installs it."""
    found = shutil.which("prometheus")
    assert found, f"the Prometheus server is not installed (Debian's prometheus package): {_APT}"
    return found
