"""Pauses and runtime settings, read by every process from the database every few seconds.

An operator's pause (``backlane pause orders``) or setting change (``backlane settings set
catalog max_concurrent 1``) is a row (:mod:`backlane.db.models.controls`); each worker and the
clock keep the latest :class:`ControlState` and read it again when it is older than
``BACKLANE_CONTROLS__REFRESH_SECONDS``, on the thread that asks (the others go on with the one
they have). So a change reaches every process within about that long, with no restart, and
outlives one: the database is the source of truth every process already reads.

When the rows cannot be read (the database away, or a schema without the tables: a worker of
the release before, or an unmigrated test database) the last state read stays in force and
one warning says why: a pause is never lifted by an outage.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import select

from backlane.core.health import ago
from backlane.db.models.controls import INBOX_PART, WHOLE_PIPELINE, Pause, SettingOverride
from backlane.settings import PipelineSettings, SettingsError, describe_validation, env_name

if TYPE_CHECKING:
    from backlane.db.engine import Database

logger = logging.getLogger("backlane.controls")


@dataclass(frozen=True)
class PauseState:
    pipeline: str
    #: "" the whole pipeline, "@inbox" its inbox, else one of its parts (a catalog section).
    part: str
    paused_at: datetime
    paused_by: str
    reason: str

    @property
    def what(self) -> str:
        """The paused thing in words: ``orders``, ``orders inbox``, ``catalog erp_stock``."""
        return paused_thing(self.pipeline, self.part)

    def summary(self, age: timedelta, old: bool) -> str:
        """The one line status, /health and the dashboard show for it, ``age`` after it began."""
        why = f": {self.reason}" if self.reason else ""
        forgotten = " (older than controls.pause_warn_hours: forgotten?)" if old else ""
        return f"paused by {self.paused_by} {ago(age.total_seconds())}{why}{forgotten}"


def paused_thing(pipeline: str, part: str) -> str:
    """A pause's target in words, from the stored ``part``."""
    if part == WHOLE_PIPELINE:
        return pipeline
    if part == INBOX_PART:
        return f"{pipeline} inbox"
    return f"{pipeline} {part}"


@dataclass(frozen=True)
class OverrideState:
    value: Any
    set_at: datetime
    set_by: str


@dataclass(frozen=True)
class ControlState:
    """Every pause and setting override, as read at ``read_at`` (monotonic seconds)."""

    pauses: Mapping[tuple[str, str], PauseState] = field(default_factory=dict)
    overrides: Mapping[str, Mapping[str, OverrideState]] = field(default_factory=dict)
    read_at: float = float("-inf")

    def paused(self, pipeline: str, part: str = WHOLE_PIPELINE) -> PauseState | None:
        return self.pauses.get((pipeline, part))

    def overrides_of(self, pipeline: str) -> Mapping[str, OverrideState]:
        return self.overrides.get(pipeline, {})


EMPTY = ControlState()


def read_state(db: Database) -> ControlState:
    """Every pause and override, now (two small queries)."""
    with db.transaction() as session:
        pauses = {
            (row.pipeline, row.part): PauseState(row.pipeline, row.part, row.paused_at, row.paused_by, row.reason)
            for row in session.scalars(select(Pause))
        }
        overrides: dict[str, dict[str, OverrideState]] = {}
        for row in session.scalars(select(SettingOverride)):
            overrides.setdefault(row.pipeline, {})[row.key] = OverrideState(row.value, row.set_at, row.set_by)
    return ControlState(pauses, overrides, time.monotonic())


class Controls:
    """One process's view of the controls: :meth:`state` is cheap (a clock read) until it is
    ``refresh_seconds`` old, then one caller reads the database again."""

    def __init__(self, database: Any, refresh_seconds: float) -> None:
        #: () -> the Database to read, or None when there is none to read (nothing opened it).
        self._database = database
        self.refresh_seconds = refresh_seconds
        self._state = EMPTY
        self._lock = threading.Lock()
        self._failing: str | None = None

    def state(self) -> ControlState:
        current = self._state
        if time.monotonic() - current.read_at < self.refresh_seconds:
            return current
        if not self._lock.acquire(blocking=False):
            return current  # another thread is reading it
        try:
            return self._refresh()
        finally:
            self._lock.release()

    def refresh(self) -> ControlState:
        """Read now, whatever the age (after this process changed a control itself)."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> ControlState:
        db = self._database()
        if db is None:
            return self._state
        try:
            state = read_state(db)
        except Exception as exc:
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            if self._failing is None:
                logger.warning("could not read pauses and runtime settings (%s); the last ones read stay", reason)
            self._failing = reason
            # Keep the old state, read again after another interval (not on every call).
            self._state = ControlState(self._state.pauses, self._state.overrides, time.monotonic())
            return self._state
        if self._failing is not None:
            logger.info("pauses and runtime settings read again")
            self._failing = None
        self._state = state
        return state


# -- runtime settings ---------------------------------------------------------------


def runtime_fields(cls: type[PipelineSettings]) -> tuple[str, ...]:
    """The setting paths of ``cls`` an operator may change at runtime (patterns with ``*``)."""
    return tuple(cls.runtime_fields)


def check_key(cls: type[PipelineSettings], key: str) -> None:
    """Refuse a key that is no runtime setting of ``cls``, listing those that are."""
    if not any(fnmatch.fnmatchcase(key, pattern) for pattern in runtime_fields(cls)):
        raise SettingsError(
            f"{key[:100]!r} is not a setting changed at runtime; those are: {', '.join(runtime_fields(cls))} "
            "(any other one: its environment variable and a restart)"
        )


def parse_value(text: str) -> Any:
    """A value as typed by an operator: JSON when it is (5, 2.5, true, null), else the text."""
    try:
        return json.loads(text)
    except RecursionError:
        raise SettingsError("the value is nested too deeply to be a setting") from None
    except ValueError:
        return text


def apply_overrides(pipeline: str, base: PipelineSettings, overrides: Mapping[str, Any]) -> PipelineSettings:
    """``base`` with each ``path -> value`` set, validated by the section's own class; a
    :class:`SettingsError` naming the setting's variable when a value is refused."""
    if not overrides:
        return base
    data = base.model_dump()
    for key, value in overrides.items():
        check_key(type(base), key)
        _set_path(data, key.split("."), value, key)
    try:
        return type(base).model_validate(data)
    except ValidationError as exc:
        raise SettingsError("; ".join(describe_validation(exc, (pipeline,)))) from None


def _set_path(data: dict[str, Any], path: list[str], value: Any, key: str) -> None:
    node: Any = data
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            raise SettingsError(f"{key[:100]!r}: no {part[:100]!r} in this section")
        node = node[part]
    if not isinstance(node, dict) or path[-1] not in node:
        raise SettingsError(f"{key[:100]!r}: no {path[-1][:100]!r} in this section")
    node[path[-1]] = value


def variable_of(pipeline: str, key: str) -> str:
    """The environment variable a runtime setting overrides (``BACKLANE_CATALOG__MAX_CONCURRENT``)."""
    return env_name((pipeline, *key.split(".")))


def value_at(settings: Any, key: str) -> Any:
    """The value at dotted ``key`` of a settings object (``limiters.catalog.calls``)."""
    node = settings
    for part in key.split("."):
        node = node[part] if isinstance(node, Mapping) else getattr(node, part)
    return node


def concrete_keys(settings: PipelineSettings) -> list[str]:
    """Every runtime setting of ``settings`` spelled out (``limiters.*.calls`` for each limiter)."""
    keys: list[str] = []
    for pattern in runtime_fields(type(settings)):
        keys += _expand(settings, pattern.split("."), [])
    return keys


def _expand(node: Any, parts: list[str], done: list[str]) -> list[str]:
    if not parts:
        return [".".join(done)]
    head, rest = parts[0], parts[1:]
    names = (sorted(node) if isinstance(node, Mapping) else []) if head == "*" else [head]
    keys: list[str] = []
    for name in names:
        child = node[name] if isinstance(node, Mapping) else getattr(node, name, None)
        if child is not None or not rest:
            keys += _expand(child, rest, [*done, name])
    return keys
