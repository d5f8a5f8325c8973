"""Charts as SVG built on the server: no script, no style attribute, every text escaped.

:func:`bar_chart` stacks its series per slot (items per minute), :func:`line_chart` draws
one line per series (queue depths). Both take one label per slot and, per series, one
value per slot (None: no data, drawn as nothing, never as 0), and return markup that is
safe to put in a page as is: the numbers are formatted here, every text (title, labels,
series names) goes through :func:`markupsafe.escape`, and colours come from the
dashboard's stylesheet by class (``s0``, ``s1``, ...), so the Content-Security-Policy
(``style-src 'self'``) has nothing to block. The chart's ``<title>`` and ``<desc>`` say
its numbers in words, for a screen reader and for a test.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from markupsafe import Markup, escape

if TYPE_CHECKING:
    from backlane.operations.dashboard.history import History, Slot

#: The drawing's size and its margins (left for the y labels, bottom for the x labels), px.
WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 22, 24
#: An x label every this many slots, counted back from the newest.
LABEL_EVERY = 15
#: A sparkline's size, px.
SPARK_WIDTH, SPARK_HEIGHT = 120, 24


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten at least ``value`` (1 for nothing): the y axis' top."""
    if not math.isfinite(value) or value <= 1:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def grid_lines(top: float) -> int:
    """How many grid lines divide ``top`` (a :func:`nice_ceiling`) into whole steps."""
    if top <= 5:
        return max(int(top), 1)
    return 4 if str(int(top))[0] == "2" else 5


def number(value: float) -> str:
    """A value as text: whole numbers without a decimal point, others to one decimal."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def bar_chart(title: str, labels: Sequence[str], series: Sequence[Series], *, unit: str = "") -> Markup:
    """``series`` stacked per slot, one bar per slot with data."""
    slots = len(labels)
    totals = [_sum(s.values[i] for s in series) for i in range(slots)]
    top = nice_ceiling(max((t for t in totals if t is not None), default=0.0))
    frame = _Frame(slots, top)
    parts: list[str] = []
    band = frame.band
    for i in range(slots):
        base = 0.0
        for k, s in enumerate(series):
            value = s.values[i]
            if not value:
                continue
            y0, y1 = frame.y(base), frame.y(base + value)
            parts.append(
                f'<rect class="bar s{k}" x="{frame.x(i) + band * 0.1:.1f}" y="{y1:.1f}" width="{band * 0.8:.1f}" '
                f'height="{max(y0 - y1, 0.5):.1f}" data-series="{escape(s.name)}" data-slot="{escape(labels[i])}" '
                f'data-value="{number(value)}"><title>{escape(labels[i])} {escape(s.name)}: {number(value)}</title>'
                "</rect>"
            )
            base += value
    return _svg(title, labels, series, frame, parts, unit, "bars")


def line_chart(title: str, labels: Sequence[str], series: Sequence[Series], *, unit: str = "") -> Markup:
    """One line per series through the slots with data (a gap where there is none), a dot per value."""
    slots = len(labels)
    top = nice_ceiling(max((v for s in series for v in s.values if v is not None), default=0.0))
    frame = _Frame(slots, top)
    parts: list[str] = []
    for k, s in enumerate(series):
        path: list[str] = []
        dots: list[str] = []
        pen_down = False
        for i, value in enumerate(s.values):
            if value is None:
                pen_down = False
                continue
            x, y = frame.x(i) + frame.band / 2, frame.y(value)
            path.append(f"{'L' if pen_down else 'M'}{x:.1f},{y:.1f}")
            pen_down = True
            dots.append(
                f'<circle class="point s{k}" cx="{x:.1f}" cy="{y:.1f}" r="2" data-series="{escape(s.name)}" '
                f'data-slot="{escape(labels[i])}" data-value="{number(value)}"/>'
            )
        if path:
            parts.append(f'<path class="line s{k}" d="{" ".join(path)}"/>')
        parts += dots
    return _svg(title, labels, series, frame, parts, unit, "lines")


@dataclass(frozen=True)
class _Frame:
    slots: int
    top: float

    @property
    def band(self) -> float:
        return (WIDTH - LEFT - RIGHT) / max(self.slots, 1)

    def x(self, slot: int) -> float:
        return LEFT + slot * self.band

    def y(self, value: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - min(max(value / self.top, 0.0), 1.0))


def _sum(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _svg(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    frame: _Frame,
    parts: list[str],
    unit: str,
    kind: str,
) -> Markup:
    has_data = any(v is not None for s in series for v in s.values)
    axes = [f'<line class="axis" x1="{LEFT}" y1="{frame.y(0):.1f}" x2="{WIDTH - RIGHT}" y2="{frame.y(0):.1f}"/>']
    lines = grid_lines(frame.top)
    for g in range(lines + 1):
        value = frame.top * g / lines
        y = frame.y(value)
        if g:
            axes.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>')
        axes.append(f'<text class="ylabel" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{number(value)}</text>')
    for i, label in enumerate(labels):
        if (len(labels) - 1 - i) % LABEL_EVERY == 0:  # counted back from the newest minute
            x, anchor = frame.x(i) + frame.band / 2, "middle"
            if i == len(labels) - 1 and i:
                x, anchor = WIDTH - RIGHT, "end"  # the newest minute's label ends at the frame's edge
            axes.append(
                f'<text class="xlabel" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">{escape(label)}</text>'
            )
    if not has_data:
        axes.append(
            f'<text class="empty" x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle">no data yet</text>'
        )
    legend = "".join(
        f'<tspan class="key s{k}" dx="{0 if k == 0 else 12}">■</tspan><tspan dx="3">{escape(s.name)}</tspan>'
        for k, s in enumerate(series)
    )
    axes.append(f'<text class="legend" x="{LEFT}" y="12">{legend}</text>')
    return Markup(
        f'<svg class="chart {kind}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'data-slots="{len(labels)}"><title>{escape(title)}</title>'
        f"<desc>{escape(describe(labels, series, unit))}</desc>{''.join(axes)}{''.join(parts)}</svg>"
    )


def describe(labels: Sequence[str], series: Sequence[Series], unit: str = "") -> str:
    """The chart in words: each slot with a value other than 0, then the slots without data."""
    said: list[str] = []
    missing = 0
    for i, label in enumerate(labels):
        values = [(s.name, s.values[i]) for s in series]
        if all(v is None for _, v in values):
            missing += 1
            continue
        if any(v for _, v in values):
            said.append(f"{label}: " + ", ".join(f"{n} {'?' if v is None else number(v)}" for n, v in values))
    text = "; ".join(said) if said else "all 0" if missing < len(labels) else "no data"
    if missing and missing < len(labels):
        text += f"; no data for {missing} of {len(labels)}"
    return f"{unit}: {text}" if unit else text


def sparkline(title: str, values: Sequence[float | None]) -> Markup:
    """A small bar per slot, no axes: the overview's glance at the last hour."""
    top = nice_ceiling(max((v for v in values if v is not None), default=0.0))
    band = SPARK_WIDTH / max(len(values), 1)
    bars = [
        f'<rect class="bar s0" x="{i * band:.1f}" y="{SPARK_HEIGHT * (1 - v / top):.1f}" width="{band * 0.8:.1f}" '
        f'height="{max(SPARK_HEIGHT * v / top, 0.5):.1f}" data-value="{number(v)}"/>'
        for i, v in enumerate(values)
        if v
    ]
    base = f'<line class="axis" x1="0" y1="{SPARK_HEIGHT}" x2="{SPARK_WIDTH}" y2="{SPARK_HEIGHT}"/>'
    known = [v for v in values if v is not None]
    desc = f"{number(sum(known))} in the last {len(values)} minutes" if known else "no data yet"
    return Markup(
        f'<svg class="spark" viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" width="{SPARK_WIDTH}" '
        f'height="{SPARK_HEIGHT}" role="img"><title>{escape(title)}</title><desc>{escape(desc)}</desc>'
        f"{base}{''.join(bars)}</svg>"
    )


def _label(slot: Slot) -> str:
    return datetime.fromtimestamp(slot.start_s, UTC).strftime("%H:%M")


def _column(slots: Sequence[Slot], name: str) -> list[float | None]:
    return [None if slot.values is None else slot.values.get(name) for slot in slots]


def pipeline_sparkline(history: History, name: str) -> Markup:
    """The overview's glance at pipeline ``name``: items finished (succeeded + failed) per minute."""
    finished = [
        None if s.values is None else (s.values.get("succeeded") or 0.0) + (s.values.get("failed") or 0.0)
        for s in history.counts(name)
    ]
    return sparkline(f"{name}: items finished per minute, last hour", finished)


def pipeline_charts(history: History, name: str) -> dict[str, Any]:
    """Pipeline ``name``'s charts from ``history``: items per minute and queue depths, the
    hour's totals by series ("?" for one never read) and when history began."""
    from backlane.operations.dashboard.history import DEPTHS, SERIES

    counts = history.counts(name)
    labels = [_label(slot) for slot in counts]
    items = [Series(series, _column(counts, series)) for series in SERIES]
    depth_slots = history.depths(name)
    depths = [Series(d.replace("_", " "), _column(depth_slots, d)) for d in DEPTHS]
    totals = {s.name: _sum(s.values) for s in items}  # None: never read (no retries from the rows)
    since = datetime.fromtimestamp(history.started_at, UTC).strftime("%H:%M:%S")
    return {
        "items": bar_chart(f"{name}: items per minute, last hour (UTC)", labels, items, unit="items per minute"),
        "depths": line_chart(
            f"{name}: queue depth, last hour (UTC)", [_label(s) for s in depth_slots], depths, unit="messages"
        ),
        "totals": {k: "?" if v is None else number(v) for k, v in totals.items()},
        "since": since,
    }
