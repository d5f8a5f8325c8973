"""monitoring/grafana/backlane.json: valid JSON Grafana can import, every PromQL expression in it
reading only metrics backlane exports, and the charts an operator looks for all there."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.monitoring import DASHBOARD, PROMETHEUS_SERIES, exported_series, metric_names


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_dashboard_is_valid_json_with_panels_on_the_datasource_variable() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "backlane" and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"] and target["expr"].strip(), panel["title"]


def test_every_expression_reads_only_metrics_backlane_exports() -> None:
    dashboard = _dashboard()
    known = exported_series() | PROMETHEUS_SERIES
    for title, expr in _targets(dashboard):
        read = metric_names(expr)
        assert read, f"{title}: no metric in {expr!r}"
        assert read <= known, f"{title} reads {sorted(read - known)}, which backlane does not export"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            (metric,) = re.fullmatch(r"label_values\((\w+), *\w+\)", query).groups()  # type: ignore[union-attr]
            assert metric in known, f"variable {variable['name']} reads {metric}"


def test_the_charts_cover_outcomes_failures_durations_dead_letters_and_breakers() -> None:
    exprs = [expr for _title, expr in _targets(_dashboard())]
    read = set().union(*(metric_names(e) for e in exprs))
    assert {
        "backlane_items_total",
        "backlane_item_duration_seconds_bucket",
        "backlane_dead_letters_total",
        "backlane_breaker_open",
        "backlane_queue_messages_ready",
        "backlane_discover_last_tick_timestamp_seconds",
        "backlane_health_row",
    } <= read
    assert any("by (pipeline, outcome)" in e and "backlane_items_total" in e for e in exprs), "items by outcome"
    assert any(e.startswith("histogram_quantile(0.5,") for e in exprs), "p50"
    assert any(e.startswith("histogram_quantile(0.99,") for e in exprs), "p99"
