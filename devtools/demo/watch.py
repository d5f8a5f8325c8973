"""Show every part's progress, each second, until all have settled, a process died or time ran out.

On a terminal the lines are redrawn in place; in a log (CI, a pipe) a look is printed
when it says something new, at most every 5 seconds.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence

from devtools.demo.part import DemoContext, DemoPart
from devtools.demo.rendering import TICKS_NOTE, changed, fit, note, progress_lines
from devtools.demo.snapshot import Snapshot, Steady, take
from devtools.stack import Stack

#: Seconds between looks.
LOOK_EVERY = 1.0
#: In a log, a changed look is printed at most this often, seconds.
PRINT_EVERY = 5.0


def dead_process(stack: Stack) -> str | None:
    """What to say about a process of the stack that exited, None while all run."""
    for proc in stack.processes:
        if not proc.alive:
            code = proc.proc.returncode if proc.proc else "?"
            return f"\n{proc.name} exited unexpectedly (exit status {code}):\n{proc.log_tail()}"
    return None


def watch(parts: Sequence[DemoPart], ctx: DemoContext, stack: Stack, timeout: float) -> Snapshot | None:
    """Show progress until every part has settled (the last look); None when a process died or
    time ran out (said why)."""
    started = time.monotonic()
    interactive = sys.stdout.isatty()
    width = shutil.get_terminal_size((160, 24)).columns - 1
    explained_ticks = False
    steady = Steady()
    shown: list[str] = []
    last_print = 0.0
    while True:
        snapshot = take(parts, ctx, time.monotonic() - started)
        waiting = steady.filter(snapshot.waiting)
        lines = progress_lines(snapshot, waiting)
        if waiting and not explained_ticks:
            print(note(TICKS_NOTE), flush=True)
            shown, explained_ticks = [], True
        if interactive:
            lines = fit(lines, width)
            if shown:
                sys.stdout.write(f"\033[{len(shown)}F\033[J")
            print("\n".join(lines), flush=True)
            shown = lines
        elif not shown or (changed(lines, shown) and time.monotonic() - last_print > PRINT_EVERY):
            print("\n".join(line for line in lines if line), flush=True)
            shown, last_print = lines, time.monotonic()
        died = dead_process(stack)
        if died is not None:
            print(died)
            return None
        if snapshot.settled:
            if not interactive and changed(lines, shown):
                print("\n".join(line for line in lines if line))
            return snapshot
        for part in parts:
            if not snapshot.results[part.name].settled:
                for text in part.nudge(ctx):
                    if not interactive:
                        print(note(text))
        if time.monotonic() - started > timeout:
            unsettled = ", ".join(snapshot.unsettled)
            print(f"\nnot settled after {timeout:.0f} s: {unsettled}; see the logs in {stack.workdir}")
            return None
        time.sleep(LOOK_EVERY)
