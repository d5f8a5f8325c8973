"""Changing a running system: pause and resume, runtime settings, cancel and reopen.

The CLI (``backlane pause``, ``backlane settings``, ``backlane cancel`` ...) and the dashboard
call these, so both do the same thing, refuse the same mistakes with the same one line, and
write the same audit record (:mod:`backlane.operations.audit`). Each writes rows the workers
and the clock read every ``controls.refresh_seconds`` (:mod:`backlane.core.controls`): nothing
is sent to a process, and nothing needs one to be up.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from backlane.core.controls import (
    PauseState,
    apply_overrides,
    check_key,
    concrete_keys,
    parse_value,
    paused_thing,
    read_state,
    value_at,
    variable_of,
)
from backlane.core.registry import Registered, Registry
from backlane.core.runtime import Runtime
from backlane.db.models.controls import INBOX_PART, WHOLE_PIPELINE, Pause, SettingOverride
from backlane.errors import EXIT_USAGE, Problem
from backlane.operations import audit
from backlane.operations.actions import registered, require_schema
from backlane.settings import SettingsError

#: Most items one synchronous cancel settles; a larger selection is a bulk job.
MAX_CANCEL_AT_ONCE = 1000
#: Longest reason an operator may give.
MAX_REASON = 500


def _now(runtime: Runtime) -> datetime:
    return runtime.clock.now()


def _audited(runtime: Runtime, actor: str, action: str, target: str, detail: str = "") -> Any:
    return audit.recorded(
        runtime.database,
        _now(runtime),
        actor,
        action,
        target,
        detail=detail,
        keep_days=runtime.settings.controls.audit_keep_days,
    )


# -- pause and resume ---------------------------------------------------------------


def pause_part(reg: Registered[Any], part: str | None, inbox: bool) -> str:
    """The stored ``part`` for a pause of ``reg`` (the whole pipeline, its inbox, one of its
    parts), a :class:`Problem` naming what it may be when it is none of them."""
    if inbox and part:
        raise Problem("pause either a part or the inbox, not both", EXIT_USAGE)
    if inbox:
        if reg.pipeline.inbox is None:
            raise Problem(f"pipeline {reg.name} has no inbox", EXIT_USAGE)
        return INBOX_PART
    if not part:
        return WHOLE_PIPELINE
    parts_of = reg.pipeline.parts
    known = list(parts_of(reg.context())) if parts_of is not None else []
    if part not in known:
        listed = f"its parts are: {', '.join(known)}" if known else "it has no parts to pause on their own"
        raise Problem(f"pipeline {reg.name} has no part {part!r}; {listed}", EXIT_USAGE)
    return part


def pause(
    registry: Registry,
    runtime: Runtime,
    actor: str,
    pipeline: str,
    part: str | None = None,
    *,
    inbox: bool = False,
    reason: str = "",
) -> str:
    """Pause a pipeline (its discover and its per-item work), one of its parts or its inbox.
    Items already queued wait, unworked and not failed, until it is resumed."""
    reg = registered(registry, pipeline)
    require_schema(runtime)
    asked = " ".join(x for x in (reg.name, part or "", "inbox" if inbox else "") if x)
    with _audited(runtime, actor, "pause", asked, reason[:MAX_REASON]) as answer:
        stored = pause_part(reg, part, inbox)
        what = paused_thing(reg.name, stored)
        with runtime.database.transaction() as session:
            existing = session.get(Pause, (reg.name, stored))
            if existing is not None:
                line = f"{what} was already paused by {existing.paused_by} at {existing.paused_at:%Y-%m-%d %H:%M} UTC"
            else:
                session.add(
                    Pause(
                        pipeline=reg.name,
                        part=stored,
                        paused_at=_now(runtime),
                        paused_by=actor,
                        reason=reason[:MAX_REASON],
                    )
                )
                line = f"{what} paused; every worker and the clock hold it within {_within(runtime)}"
        answer.append(line)
    runtime.controls.refresh()
    return line


def resume(
    registry: Registry, runtime: Runtime, actor: str, pipeline: str, part: str | None = None, *, inbox: bool = False
) -> str:
    reg = registered(registry, pipeline)
    require_schema(runtime)
    asked = " ".join(x for x in (reg.name, part or "", "inbox" if inbox else "") if x)
    with _audited(runtime, actor, "resume", asked) as answer:
        stored = pause_part(reg, part, inbox)
        what = paused_thing(reg.name, stored)
        with runtime.database.transaction() as session:
            removed = session.execute(delete(Pause).where(Pause.pipeline == reg.name, Pause.part == stored)).rowcount  # type: ignore[attr-defined]
        if removed:
            recheck = runtime.settings.controls.paused_recheck_seconds
            line = f"{what} resumed; items that waited run within about {recheck:g} s"
        else:
            line = f"{what} was not paused"
        answer.append(line)
    runtime.controls.refresh()
    return line


def _within(runtime: Runtime) -> str:
    return f"{runtime.settings.controls.refresh_seconds:g} s"


@dataclass(frozen=True)
class PauseView:
    """A pause as status, /health and the dashboard show it."""

    pause: PauseState
    age: timedelta
    #: Older than controls.pause_warn_hours: perhaps forgotten.
    old: bool

    def line(self) -> str:
        return self.pause.summary(self.age, self.old)


def pauses(runtime: Runtime) -> list[PauseView]:
    """Every pause now, read from the database (not this process's cached view)."""
    now = _now(runtime)
    warn = timedelta(hours=runtime.settings.controls.pause_warn_hours)
    state = read_state(runtime.database)
    views = []
    for pause_state in sorted(state.pauses.values(), key=lambda p: (p.pipeline, p.part)):
        paused_at = (
            pause_state.paused_at if pause_state.paused_at.tzinfo else pause_state.paused_at.replace(tzinfo=now.tzinfo)
        )
        age = max(now - paused_at, timedelta(0))
        views.append(PauseView(pause_state, age, age > warn))
    return views


# -- runtime settings --------------------------------------------------------------


@dataclass(frozen=True)
class SettingRow:
    """One runtime setting of a pipeline: its value now and where it comes from."""

    key: str
    value: Any
    #: "runtime" (an operator's override), "environment" (its variable is set) or "default".
    source: str
    variable: str
    set_by: str | None = None
    set_at: datetime | None = None
    #: The value the environment (or the default) gives, under an override.
    underneath: Any = None


def settings_of(registry: Registry, runtime: Runtime, pipeline: str) -> list[SettingRow]:
    """Every runtime setting of ``pipeline``: value now, its source, the variable it overrides."""
    reg = registered(registry, pipeline)
    base = _base(runtime, reg)
    overrides = read_state(runtime.database).overrides_of(reg.name)
    effective = _effective(reg.name, base, {k: o.value for k, o in overrides.items()})
    environment = {key.upper() for key in os.environ}
    rows = []
    for key in concrete_keys(base):
        variable = variable_of(reg.name, key)
        underneath = value_at(base, key)
        override = overrides.get(key)
        if override is not None:
            rows.append(
                SettingRow(
                    key, value_at(effective, key), "runtime", variable, override.set_by, override.set_at, underneath
                )
            )
        else:
            source = "environment" if variable in environment else "default"
            rows.append(SettingRow(key, underneath, source, variable))
    return rows


def _base(runtime: Runtime, reg: Registered[Any]) -> Any:
    """The pipeline's section as the environment gives it, without runtime overrides."""
    reg.context().config  # noqa: B018 - reads it from the environment on first use
    return runtime.configs[reg.name]


def _effective(pipeline: str, base: Any, overrides: dict[str, Any]) -> Any:
    try:
        return apply_overrides(pipeline, base, overrides)
    except SettingsError:
        return base


def set_setting(registry: Registry, runtime: Runtime, actor: str, pipeline: str, key: str, text: str) -> str:
    """Override ``key`` of ``pipeline`` with ``text`` (JSON, else a string), validated exactly as
    its environment variable would be, together with the other overrides in force."""
    reg = registered(registry, pipeline)
    require_schema(runtime)
    with _audited(runtime, actor, "set", f"{reg.name} {key}", f"{key} = {text[:200]}") as answer:
        base = _base(runtime, reg)
        try:
            value = parse_value(text)
            check_key(type(base), key)
            current = {k: o.value for k, o in read_state(runtime.database).overrides_of(reg.name).items()}
            apply_overrides(reg.name, base, {**current, key: value})
        except SettingsError as exc:
            raise Problem(str(exc), EXIT_USAGE) from None
        now = _now(runtime)
        row = {"pipeline": reg.name, "key": key, "value": value, "set_at": now, "set_by": actor}
        with runtime.database.transaction() as session:
            insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            statement = insert(SettingOverride).values(**row)
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["pipeline", "key"], set_={"value": value, "set_at": now, "set_by": actor}
                )
            )
        line = (
            f"{reg.name} {key} = {value!r} (over {variable_of(reg.name, key)}); every process within {_within(runtime)}"
        )
        answer.append(line)
    runtime.controls.refresh()
    return line


def unset_setting(registry: Registry, runtime: Runtime, actor: str, pipeline: str, key: str) -> str:
    """Revert ``key`` of ``pipeline`` to the environment's value (or its default)."""
    reg = registered(registry, pipeline)
    require_schema(runtime)
    with _audited(runtime, actor, "unset", f"{reg.name} {key}") as answer:
        with runtime.database.transaction() as session:
            removed = session.execute(
                delete(SettingOverride).where(SettingOverride.pipeline == reg.name, SettingOverride.key == key)
            ).rowcount  # type: ignore[attr-defined]
        if removed:
            line = f"{reg.name} {key} reverted to {variable_of(reg.name, key)} (or its default)"
        else:
            line = f"{reg.name} {key} had no runtime value"
        answer.append(line)
    runtime.controls.refresh()
    return line


# -- cancel and reopen ---------------------------------------------------------------


def _item_ids(values: Sequence[str]) -> list[int]:
    ids = []
    for value in values:
        text = value.strip()
        if not (text.isascii() and text.isdigit() and len(text) < 19):
            raise Problem(f"{value!r} is not an item id (a whole number); use --search for other keys", EXIT_USAGE)
        ids.append(int(text))
    return ids


def cancel(
    registry: Registry,
    runtime: Runtime,
    actor: str,
    pipeline: str,
    *,
    ids: Sequence[str] = (),
    search: str = "",
    reason: str = "",
) -> str:
    """Cancel items by id, or those whose searchable column is exactly ``search`` (at most
    :data:`MAX_CANCEL_AT_ONCE`; a larger selection is a bulk job). A cancelled item is settled
    as "cancelled by WHO: WHY"; its queued message does nothing when it arrives."""
    reg = registered(registry, pipeline)
    require_schema(runtime)
    why = f"cancelled by {actor}: {reason.strip()[:MAX_REASON]}"
    selection = f"ids {', '.join(ids)[:500]}" if ids else f"search {search!r}"
    with _audited(runtime, actor, "cancel", reg.name, f"{selection}; {reason[:MAX_REASON]}") as answer:
        hook = reg.pipeline.cancel
        if hook is None:
            raise Problem(f"pipeline {reg.name}'s items cannot be cancelled", EXIT_USAGE)
        if bool(ids) == bool(search.strip()):
            raise Problem("name the items to cancel: ids, or --search TEXT (not both)", EXIT_USAGE)
        if not reason.strip():
            raise Problem("say why (--reason): it is kept on each cancelled item", EXIT_USAGE)
        ctx = reg.context()
        wanted = _item_ids(ids) if ids else _search_ids(reg, search)
        done = hook(ctx, wanted, why)
        left = len(wanted) - len(done)
        line = f"{reg.name}: cancelled {len(done)} of {len(wanted)} item(s)"
        if left:
            line += f"; {left} left as they were (settled already, or past the point they can be cancelled)"
        answer.append(line)
    return line


def _search_ids(reg: Registered[Any], search: str) -> list[Any]:
    table = reg.pipeline.table
    if table is None:
        raise Problem(f"pipeline {reg.name} has no table to search", EXIT_USAGE)
    found = table.cancellable_ids(reg.context(), search, limit=MAX_CANCEL_AT_ONCE + 1)
    if len(found) > MAX_CANCEL_AT_ONCE:
        raise Problem(
            f"more than {MAX_CANCEL_AT_ONCE} items match {search!r}: cancel them as a bulk job "
            f"(`backlane cancel {reg.name} --search ... --reason ... --job`)",
            EXIT_USAGE,
        )
    return found


def cancel_job(
    registry: Registry, runtime: Runtime, actor: str, pipeline: str, *, search: str, reason: str, detach: bool
) -> int:
    """A bulk job cancelling every item ``search`` selects, however many (see
    :mod:`backlane.operations.jobs.selection`); its id."""
    from backlane.operations.jobs import operations

    reg = registered(registry, pipeline)
    if reg.pipeline.cancel is None or reg.pipeline.table is None:
        raise Problem(f"pipeline {reg.name}'s items cannot be cancelled", EXIT_USAGE)
    if not search.strip() or not reason.strip():
        raise Problem("a cancel job needs --search TEXT and --reason WHY", EXIT_USAGE)
    require_schema(runtime)
    why = f"cancelled by {actor}: {reason.strip()[:MAX_REASON]}"
    params = {"pipeline": reg.name, "search": search.strip()[:200], "why": why}
    return operations.start(runtime, actor, "cancel", params, detach=detach)


def reopen(registry: Registry, runtime: Runtime, actor: str, pipeline: str, ids: Sequence[str]) -> str:
    """Make cancelled items due again: discover takes them at its next tick."""
    reg = registered(registry, pipeline)
    hook = reg.pipeline.uncancel
    if hook is None:
        raise Problem(f"pipeline {reg.name}'s items cannot be reopened", EXIT_USAGE)
    if not ids:
        raise Problem("name the cancelled items to reopen by id", EXIT_USAGE)
    require_schema(runtime)
    with _audited(runtime, actor, "reopen", reg.name, f"ids {', '.join(ids)}") as answer:
        wanted = _item_ids(ids)
        done = hook(reg.context(), wanted, "")
        line = f"{reg.name}: reopened {len(done)} of {len(wanted)} item(s)"
        if len(done) < len(wanted):
            line += f"; {len(wanted) - len(done)} were not cancelled"
        answer.append(line)
    return line


def audited_trigger(registry: Registry, runtime: Runtime, actor: str, pipeline: str, target: str | None) -> str:
    """:func:`backlane.operations.actions.trigger`, recorded in the audit trail."""
    from backlane.operations.actions import trigger

    with _audited(runtime, actor, "trigger", f"{pipeline} {target}" if target else pipeline) as answer:
        line = trigger(registry, runtime, pipeline, target)
        answer.append(line)
    return line


def parts_of(reg: Registered[Any]) -> list[str]:
    """The parts of a pipeline that pause on their own (a catalog's sections)."""
    return list(reg.pipeline.parts(reg.context())) if reg.pipeline.parts is not None else []


__all__ = [
    "MAX_CANCEL_AT_ONCE",
    "PauseView",
    "SettingRow",
    "audited_trigger",
    "cancel",
    "parts_of",
    "pause",
    "pauses",
    "reopen",
    "resume",
    "set_setting",
    "settings_of",
    "unset_setting",
]
