"""How the demo reads: the progress lines of every look, and the summary with every failure explained.

Parts give their text; this module labels it with the part's name, aligns it, and
says the parts' failures and how to requeue them, all without naming a pipeline.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from devtools.demo.infrastructure import StartedSimulator
from devtools.demo.part import Failure, Outcome, Wait
from devtools.demo.snapshot import Snapshot

#: Width of the part's name before its progress text ("orders   pending ...").
LABEL = 8
#: Width of the elapsed-time prefix ("[  12s] "); lines compare without it.
PREFIX = 8
#: Said once, the first time something waits for the clock.
TICKS_NOTE = (
    "(the clock ticks every minute, BACKLANE_<PIPELINE>__TICK; a tick claims at most "
    "BACKLANE_<PIPELINE>__MAX_ITEMS items, the rest wait for the next one)"
)
#: A failure's reason is cut to this many characters in the summary.
REASON_LIMIT = 160


def note(text: str) -> str:
    """A remark between progress lines, under the parts' text."""
    return " " * PREFIX + text


def progress_lines(snapshot: Snapshot, waiting: Sequence[Wait]) -> list[str]:
    """Every part's progress, labelled with its name; the last line says what waits for a tick
    (empty when nothing does, so that a terminal's redraw keeps the same height)."""
    labelled = [
        f"{name if i == 0 else '':<{LABEL}} {line}"
        for name, result in snapshot.results.items()
        for i, line in enumerate(result.lines)
    ]
    labelled.append(f"{'waiting':<{LABEL}} {'; '.join(w.text for w in waiting)}" if waiting else "")
    stamp = f"[{snapshot.elapsed:4.0f}s]".ljust(PREFIX)
    return [(stamp if i == 0 else " " * PREFIX) + line if line else "" for i, line in enumerate(labelled)]


def fit(lines: Sequence[str], width: int) -> list[str]:
    """Lines cut to a terminal's width."""
    return [line if len(line) <= width else line[: width - 1] + "…" for line in lines]


def changed(lines: Sequence[str], before: Sequence[str]) -> bool:
    """Whether the progress lines say something new (the elapsed time aside)."""
    return [line[PREFIX:] for line in lines] != [line[PREFIX:] for line in before]


def simulator_line(simulator: StartedSimulator) -> str:
    return f"{simulator.group} simulator: {simulator.url}: " + "; ".join(simulator.plays)


def sample_data_line(db_url: str, phrases: Sequence[str]) -> str:
    return f"sample data in {db_url}: " + "; ".join(phrase for phrase in phrases if phrase)


def not_seeded_lines(pipelines: Sequence[str]) -> list[str]:
    return [f"{name}: no demo part: not seeded" for name in pipelines]


def environment_lines(env: dict[str, str]) -> list[str]:
    """What a second terminal needs to watch the demo with ``backlane status --watch``."""
    names = ("BACKLANE_BROKER__URL", "BACKLANE_BROKER__MANAGEMENT_URL", "BACKLANE_DATABASE__URL")
    assignments = " ".join(f"{name}='{env[name]}'" for name in names)
    backlane = Path(sys.executable).parent / "backlane"
    try:
        shown = backlane.relative_to(Path.cwd())
    except ValueError:
        shown = backlane
    return [f"  export {assignments}", f"  {shown} status --watch"]


def outcome_lines(name: str, outcome: Outcome) -> list[str]:
    """A part's summary lines, each labelled with its name ("orders:  all 100 settled ...")."""
    return [f"{name + ':':<{LABEL}} {line}" for line in outcome.lines]


def cut(text: str | None, limit: int = REASON_LIMIT) -> str:
    text = " ".join((text or "no reason recorded").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failure_lines(failures: Sequence[Failure], on_purpose: Sequence[str]) -> list[str]:
    """Every item that failed for good with its reason, and how to put them back."""
    if not failures:
        return ["", "no item failed for good."]
    lines = ["", f"{len(failures)} item(s) failed for good, each with its reason:"]
    lines += [f"  {f.queue:<15} {f.item:<10} {cut(f.reason)}" for f in failures]
    lines += [
        "Each is also a dead letter in its queue's .XQ with the same reason. See them, fix the cause, then put",
        "them back (with the environment printed above, in a second terminal; --stay keeps the demo running):",
        "  backlane dead-letters list",
    ]
    lines += [f"  backlane dead-letters requeue --all --queue {queue}" for queue in sorted({f.queue for f in failures})]
    lines.append("or on the dashboard's Dead letters page (Requeue, Requeue selected, Requeue all).")
    if on_purpose:
        lines.append(on_purpose_line(on_purpose))
    return lines


def on_purpose_line(items: Sequence[str]) -> str:
    """("the broken track", "the rejected batch") -> "(The broken track and the rejected batch are in
    the sample data on purpose: neither can succeed.)" """
    said = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    verdict = {1: "is in the sample data on purpose: it cannot", 2: "are in the sample data on purpose: neither can"}
    rest = verdict.get(len(items), "are in the sample data on purpose: none can")
    return f"({said[0].upper()}{said[1:]} {rest} succeed.)"
