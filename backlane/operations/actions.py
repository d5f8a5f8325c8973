"""What an operator asks for, done the same way from the command line and the dashboard.

``backlane trigger PIPELINE [TARGET]`` and the dashboard's *Trigger now* (a pipeline's, or a health row's)
buttons both call :func:`trigger`; each returns the one line that says what happened and
raises :class:`~backlane.errors.Problem` for a request that cannot be done (an unknown
pipeline or section, the database not migrated). The dead-letter actions are those of
:mod:`backlane.operations.dead_letters`, also shared.
"""

from __future__ import annotations

from typing import Any

from backlane.core.registry import Registered, Registry
from backlane.core.runtime import Runtime
from backlane.problems import EXIT_USAGE, Problem


def registered(registry: Registry, name: str) -> Registered[Any]:
    """The pipeline called ``name``; a :class:`Problem` listing the registered ones when none is."""
    try:
        return registry.get(name)
    except KeyError as exc:
        raise Problem(str(exc.args[0]), EXIT_USAGE) from None


def require_schema(runtime: Runtime) -> None:
    """Stop with one line when the database is missing, unreachable or not migrated."""
    from backlane.db.schema import schema_state

    state = schema_state(runtime.database_url, connect_timeout=runtime.settings.database.connect_timeout)
    if not state.ok:
        assert state.problem is not None
        raise state.problem


def trigger(registry: Registry, runtime: Runtime, pipeline: str, target: str | None = None) -> str:
    """Run ``pipeline``'s discover now, or hand ``target`` to its trigger hook (catalog: refresh
    that section now, whatever its interval); the line saying what was done."""
    reg = registered(registry, pipeline)
    if not target:
        assert reg.discover_actor is not None, f"{pipeline} has no discover actor (is the scheduler loaded?)"
        reg.discover_actor.send()
        return f"discover for {pipeline} queued on 'discover'"
    hook = reg.pipeline.trigger
    if hook is None:
        raise Problem(f"pipeline {pipeline} takes no argument: run `backlane trigger {pipeline}`", EXIT_USAGE)
    require_schema(runtime)
    try:
        items = hook(reg.context(), target)
    except KeyError as exc:  # e.g. an unknown catalog section; the message lists the known ones
        raise Problem(str(exc.args[0]), EXIT_USAGE) from None
    for item in items:
        reg.process_actor.send(item)
    when = None if items or reg.pipeline.trigger_when is None else reg.pipeline.trigger_when(reg.context(), target)
    if when:
        return f"{pipeline} {target}: requested, but {when}"
    if items:
        return f"{pipeline} {target}: {len(items)} item(s) queued"
    return f"{pipeline} {target}: requested; its next discover takes it when it can"
