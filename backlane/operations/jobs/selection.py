"""The kind ``cancel``: cancel every item of a pipeline a search selects, however many, a page
of ids at a time (bounded memory), stoppable between two pages.

A page is the next ids that a cancel would still settle (rows with work left that may be
cancelled, matching the search, by id), so a resumed job starts again from the first id
still cancellable: what the last run cancelled is no longer selected, nothing is cancelled
twice and nothing is skipped. Each page is one statement (the pipeline's ``cancel`` hook).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from backlane.errors import EXIT_USAGE, Problem
from backlane.operations.jobs.kinds import JobKind, Progress, register_kind

if TYPE_CHECKING:
    from backlane.core.registry import Registered
    from backlane.core.runtime import Runtime

#: Items one page (one statement) cancels.
PAGE = 500


def _registered(params: Mapping[str, Any]) -> Registered[Any]:
    from backlane.core.registry import REGISTRY

    try:
        registered = REGISTRY.get(str(params.get("pipeline")))
    except KeyError as exc:
        raise Problem(str(exc.args[0]), EXIT_USAGE) from None
    if registered.pipeline.table is None or registered.pipeline.cancel is None:
        raise Problem(f"pipeline {registered.name}'s items cannot be cancelled", EXIT_USAGE)
    return registered


def count_selected(_runtime: Runtime, params: Mapping[str, Any]) -> int:
    registered = _registered(params)
    assert registered.pipeline.table is not None
    return registered.pipeline.table.cancellable_count(registered.context(), str(params.get("search", "")))


def run_cancel(_runtime: Runtime, params: Mapping[str, Any], progress: Progress) -> str:
    registered = _registered(params)
    table, hook = registered.pipeline.table, registered.pipeline.cancel
    assert table is not None and hook is not None
    ctx = registered.context()
    search, why = str(params.get("search", "")), str(params.get("why", ""))
    cancelled = left = 0
    after: Any = None
    while not progress.should_stop():
        page = table.cancellable_ids(ctx, search, after=after, limit=PAGE)
        if not page:
            break
        done = hook(ctx, page, why)
        cancelled += len(done)
        left += len(page) - len(done)  # settled between the read and the write: left as they are
        progress.advance(done=len(done), skipped=len(page) - len(done))
        after = page[-1]
    line = f"{registered.name}: cancelled {cancelled:,} item(s) matching {search!r}"
    return line + (f"; {left:,} settled meanwhile, left as they were" if left else "")


def _describe(params: Mapping[str, Any]) -> tuple[str, str]:
    return str(params.get("pipeline")), f"every item matching {params.get('search')!r}; {params.get('why', '')}"


CANCEL = register_kind(JobKind("cancel", count_selected, run_cancel, _describe))
