"""The dashboard's SVG charts and the history they are drawn from, as pure functions:
scaling and bounds, empty data, escaping, and what a sample adds to a minute."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from backlane.operations.dashboard.charts import (
    HEIGHT,
    LEFT,
    RIGHT,
    TOP,
    WIDTH,
    Series,
    bar_chart,
    describe,
    grid_lines,
    line_chart,
    nice_ceiling,
    pipeline_charts,
    pipeline_sparkline,
    sparkline,
)
from backlane.operations.dashboard.history import WINDOW_MINUTES, History, Sampler

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def parsed(markup: str) -> ET.Element:
    """The chart as XML (it must be well-formed), with the SVG namespace the browser gives it."""
    return ET.fromstring(str(markup).replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


def rects(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if "bar" in r.get("class", "")]


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1), (0.3, 1), (1, 1), (1.5, 2), (3, 5), (7, 10), (11, 20), (42, 50), (999, 1000)]
)
def test_the_y_axis_top_is_the_next_round_number(value: float, top: float) -> None:
    assert nice_ceiling(value) == top
    assert (top / grid_lines(top)).is_integer()  # whole steps between grid lines


def test_bars_stack_per_slot_scaled_to_the_axis_and_inside_the_frame() -> None:
    labels = ["07:00", "07:01", "07:02"]
    series = [Series("succeeded", [4, None, 0]), Series("failed", [1, None, 2]), Series("retried", [0, None, 3])]
    root = parsed(bar_chart("items", labels, series))
    bars = rects(root)
    # One rect per non-zero value: 07:00 succeeded+failed, 07:02 failed+retried; nothing for the gap.
    assert [(b.get("data-slot"), b.get("data-series"), b.get("data-value")) for b in bars] == [
        ("07:00", "succeeded", "4"),
        ("07:00", "failed", "1"),
        ("07:02", "failed", "2"),
        ("07:02", "retried", "3"),
    ]
    bottom = HEIGHT - 24
    plot = bottom - TOP
    top = nice_ceiling(5)  # the largest stack: 4 + 1 = 2 + 3
    for bar in bars:
        x, y, w, h = (float(bar.get(k, "nan")) for k in ("x", "y", "width", "height"))
        assert x >= LEFT and x + w <= WIDTH - RIGHT
        assert y >= TOP and y + h <= bottom + 0.01
        assert h == pytest.approx(plot * float(bar.get("data-value", "0")) / top, abs=0.1)
    # Stacked: failed sits on top of succeeded in the same column.
    succeeded, failed = bars[0], bars[1]
    assert float(failed.get("y", "0")) + float(failed.get("height", "0")) == pytest.approx(
        float(succeeded.get("y", "0")), abs=0.1
    )
    assert root.get("data-slots") == "3"


def test_lines_leave_a_gap_where_there_is_no_data_and_never_draw_it_as_zero() -> None:
    labels = [f"07:0{i}" for i in range(5)]
    root = parsed(line_chart("depth", labels, [Series("ready", [1, 2, None, 4, 0])]))
    points = [c for c in root.iter(f"{SVG}circle")]
    assert [p.get("data-value") for p in points] == ["1", "2", "4", "0"]
    [path] = [p for p in root.iter(f"{SVG}path")]
    assert path.get("d", "").count("M") == 2  # the pen lifted over the missing minute
    zero = next(p for p in points if p.get("data-value") == "0")
    assert float(zero.get("cy", "0")) == pytest.approx(HEIGHT - 24)  # 0 on the axis


def test_an_empty_chart_says_so_and_draws_nothing() -> None:
    labels = ["07:00", "07:01"]
    for chart in (bar_chart, line_chart):
        root = parsed(chart("nothing", labels, [Series("a", [None, None])]))
        assert not rects(root) and not list(root.iter(f"{SVG}circle"))
        assert "no data yet" in "".join(root.itertext())
        assert root.findtext(f"{SVG}desc") == "no data"
    assert parsed(bar_chart("none", [], [])).get("data-slots") == "0"  # no slot at all: still a chart


def test_titles_labels_and_series_names_are_escaped() -> None:
    markup = "".join(
        str(chart)
        for chart in (
            bar_chart(HOSTILE, [HOSTILE], [Series(HOSTILE, [3])], unit=HOSTILE),
            line_chart(HOSTILE, [HOSTILE], [Series(HOSTILE, [3])]),
            sparkline(HOSTILE, [1.0]),
        )
    )
    assert "<script" not in markup and "<img" not in markup
    root = parsed(bar_chart(HOSTILE, [HOSTILE], [Series(HOSTILE, [3])]))
    assert root.findtext(f"{SVG}title") == HOSTILE  # shown as the text it is
    assert rects(root)[0].get("data-series") == HOSTILE
    assert "style=" not in markup and "<script" not in markup  # nothing the CSP would block


def test_the_description_says_the_numbers() -> None:
    labels = ["07:00", "07:01", "07:02"]
    series = [Series("succeeded", [0, 5, None]), Series("failed", [0, 1, None])]
    assert describe(labels, series, "items per minute") == (
        "items per minute: 07:01: succeeded 5, failed 1; no data for 1 of 3"
    )
    assert describe(labels[:1], series, "") == "all 0"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_history_counts_the_increase_per_minute_from_cumulative_counters() -> None:
    clock = Clock(600 * 60.0)  # the start of a minute
    history = History(clock)
    history.record_counts("p", "metrics", {"succeeded": 100, "failed": 3, "retried": 7})  # a baseline, not work
    clock.now += 20
    history.record_counts("p", "metrics", {"succeeded": 104, "failed": 3, "retried": 8})
    clock.now += 60
    history.record_counts("p", "metrics", {"succeeded": 110, "failed": 4, "retried": 8})
    clock.now += 10
    history.record_counts("p", "metrics", {"succeeded": 2, "failed": 4, "retried": 8})  # a worker restarted
    slots = history.counts("p")
    assert len(slots) == WINDOW_MINUTES
    assert slots[-1].values == {"succeeded": 6, "failed": 1, "retried": 0}
    assert slots[-2].values == {"succeeded": 4, "failed": 0, "retried": 1}
    assert all(slot.values is None for slot in slots[:-2])  # before the dashboard started: no data, not 0
    # A switch of source (the workers stopped answering: the rows' counts) is no work done.
    history.record_counts("p", "rows", {"succeeded": 5000, "failed": 40})
    assert history.counts("p")[-1].values == {"succeeded": 6, "failed": 1, "retried": 0}


def test_history_keeps_only_the_window_and_the_last_depth_of_each_minute() -> None:
    clock = Clock(1000 * 60.0)
    history = History(clock)
    for minute in range(3 * WINDOW_MINUTES):
        history.record_depths("p", {"ready": minute, "unacked": 0, "delayed": 0, "dead_lettered": None})
        clock.now += 30
        history.record_depths("p", {"ready": minute + 0.5, "unacked": 1, "delayed": 0, "dead_lettered": None})
        clock.now += 30
    clock.now -= 60
    slots = history.depths("p")
    assert len(slots) == WINDOW_MINUTES
    assert len(history._depths["p"]) == WINDOW_MINUTES  # bounded in memory
    assert slots[-1].values == {"ready": 3 * WINDOW_MINUTES - 0.5, "unacked": 1, "delayed": 0, "dead_lettered": None}


def test_a_pipelines_charts_from_its_history() -> None:
    clock = Clock(500 * 60.0 + 5)
    history = History(clock)
    history.record_counts("p", "metrics", {"succeeded": 0, "failed": 0, "retried": 0})
    history.record_depths("p", {"ready": 3, "unacked": 1, "delayed": 0, "dead_lettered": 2})
    clock.now += 30
    history.record_counts("p", "metrics", {"succeeded": 9, "failed": 1, "retried": 2})
    charts = pipeline_charts(history, "p")
    assert charts["totals"] == {"succeeded": "9", "failed": "1", "retried": "2"}
    items, depths = parsed(charts["items"]), parsed(charts["depths"])
    assert [(b.get("data-series"), b.get("data-value")) for b in rects(items)] == [
        ("succeeded", "9"),
        ("failed", "1"),
        ("retried", "2"),
    ]
    assert {c.get("data-series"): c.get("data-value") for c in depths.iter(f"{SVG}circle")} == {
        "ready": "3",
        "unacked": "1",
        "delayed": "0",
        "dead lettered": "2",
    }
    assert items.get("data-slots") == str(WINDOW_MINUTES)
    assert re.fullmatch(r"\d\d:\d\d:\d\d", charts["since"])
    spark = parsed(pipeline_sparkline(history, "p"))
    assert [b.get("data-value") for b in rects(spark)] == ["10"]  # finished: succeeded + failed


def test_the_sampler_samples_on_its_thread_until_stopped_and_outlives_a_failing_sample(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import threading

    calls: list[int] = []
    enough = threading.Event()

    def sample() -> None:
        calls.append(1)
        if len(calls) >= 4:
            enough.set()
        raise OSError("the management API is away")

    def samplers() -> int:
        return [t.name for t in threading.enumerate()].count("backlane-dashboard-sampler")

    # Other tests' dashboards, mounted without a lifespan, keep theirs (daemon threads): count ours.
    before = samplers()
    sampler = Sampler(sample, seconds=0.01)
    sampler.start()
    sampler.start()  # once: a page view after the server's start adds no thread
    assert enough.wait(5), calls
    sampler.stop()
    stopped_at = len(calls)
    assert samplers() == before
    assert len(calls) == stopped_at
    warnings = [r for r in caplog.records if "history sample failed (OSError)" in r.getMessage()]
    assert len(warnings) == 1  # said once, not every period
    Sampler(sample, seconds=0).start()  # 0: off
    assert samplers() == before
