"""A worker or the clock refuses to start, in one line, when it could only fail.

``dramatiq actors scheduler`` and ``periodiq scheduler`` import the application
in processes of their own: a bad setting raised there used to end in a
multiprocess traceback (or periodiq's "please file an issue"), and a worker
started before ``backlane migrate`` ran happily into "no such table" every tick.
Here such a process instead logs one line naming the setting or the fix and
exits with :data:`~backlane.problems.EXIT_CONFIG` (78), which a supervisor can
keep from restarting it in a loop.

* :func:`process_role`: is this process a worker (a child of the dramatiq CLI) or
  the clock (``periodiq``)? Anything else (a command, a test) raises as usual.
* :func:`refuse`: the one line, said once however many worker processes
  ``--processes N`` starts, then the exit.
* :func:`check_database`: the schema must be there and current; a database that is
  merely unreachable is waited for like any outage, with one warning.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import sys
from typing import NoReturn

from backlane.problems import EXIT_CONFIG, Problem

logger = logging.getLogger("backlane.startup")

WORKER, CLOCK = "worker", "clock"


def process_role() -> str | None:
    """``"worker"`` in a process the dramatiq CLI started, ``"clock"`` in ``periodiq``, else None."""
    if "dramatiq.cli" in sys.modules and multiprocessing.parent_process() is not None:
        return WORKER
    program = sys.argv[0] if sys.argv else ""
    if os.path.basename(program) == "periodiq" or program.replace("\\", "/").endswith("periodiq/__main__.py"):
        return CLOCK
    return None


def _speaks_for_its_siblings() -> bool:
    """Of the worker processes one dramatiq invocation starts (Process-1 ... Process-N, then its
    forks), the first says why they all stop: they all fail alike, and one line is enough."""
    name = multiprocessing.current_process().name
    return not re.fullmatch(r"Process-\d+", name) or name == "Process-1"


def refuse(problem: Problem | str, role: str | None = None) -> NoReturn:
    """Log why this worker or clock does not start (one line) and exit with status 78."""
    role = role or process_role() or "process"
    line = problem.line if isinstance(problem, Problem) else problem
    if role != WORKER or _speaks_for_its_siblings():
        logger.critical("the %s does not start: %s", role, line)
        for handler in logging.getLogger().handlers + logger.handlers:
            handler.flush()
    raise SystemExit(EXIT_CONFIG)


def check_database(url: str, connect_timeout: float, role: str) -> None:
    """Refuse to start on a database without backlane's schema (or one that refuses us); start
    anyway, saying so once, on one that is unreachable: its outage is waited out like any other."""
    from backlane.db.schema import UNREACHABLE, schema_state

    state = schema_state(url, connect_timeout=connect_timeout)
    if state.ok:
        return
    assert state.problem is not None
    if state.state == UNREACHABLE:
        logger.warning("%s; the %s starts anyway and waits for it", state.problem.line, role)
        return
    refuse(state.problem, role)
