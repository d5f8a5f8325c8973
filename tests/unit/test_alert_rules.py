"""The alert rules in monitoring/prometheus/: promtool accepts them and passes their unit tests,
every rule has a case that fires and one that does not, every rule reads only metrics backlane
exports, and docs/alerts.md explains every alert."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import yaml

from tests import docs
from tests.monitoring import PROMETHEUS_SERIES, RULE_TESTS, RULES, exported_series, metric_names, promtool


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


def test_every_rule_passes_its_promtool_unit_tests() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_rule_has_a_case_that_fires_and_one_that_does_not() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in _rules()}
    assert names - fires == set(), "rules without a firing case in alerts.test.yml"
    assert names - silent == set(), "rules without a not-firing case in alerts.test.yml"
    assert (fires | silent) - names == set(), "alerts.test.yml tests alerts that alerts.yml does not have"


def test_every_rule_reads_only_metrics_backlane_exports() -> None:
    known = exported_series() | PROMETHEUS_SERIES
    for rule in _rules():
        read = metric_names(rule["expr"])
        assert read, f"{rule['alert']}: no metric found in its expression"
        assert read <= known, f"{rule['alert']} reads {sorted(read - known)}, which backlane does not export"


def test_every_rule_has_a_severity_a_summary_and_a_runbook_on_the_alerts_page() -> None:
    page = docs.text("docs/alerts.md")
    headings = {m.lower() for m in re.findall(r"^### (\w+)$", page, re.MULTILINE)}
    for rule in _rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["runbook"] == f"docs/alerts.md#{name.lower()}", name
        assert name.lower() in headings, f"docs/alerts.md has no '### {name}' section"
    assert headings == {rule["alert"].lower() for rule in _rules()}, "docs/alerts.md lists an alert that is gone"


def test_metric_names_are_read_out_of_promql() -> None:
    expr = (
        'sum by (pipeline, le) (rate(backlane_items_total{outcome=~"failed|retry"}[$__rate_interval])) * 60'
        " / on (pipeline) group_left max(up offset 5m) > 0.5"
        ' or label_replace(backlane_queue_messages_ready{queue=~".+[.]XQ"}, "queue", "$1", "queue", "(.+)")'
        " and time() - max without (instance) (backlane_discover_last_tick_timestamp_seconds[10m:1m]) > 9e2"
    )
    assert metric_names(expr) == {
        "backlane_items_total",
        "up",
        "backlane_queue_messages_ready",
        "backlane_discover_last_tick_timestamp_seconds",
    }


def test_the_alerts_pages_promtool_command_runs_as_written() -> None:
    command = docs.block("docs/alerts.md", "sh", "promtool check rules alerts.yml", "promtool test rules")
    promtool()
    done = subprocess.run(["bash", "-c", command], cwd=docs.REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == 2, done.stdout
