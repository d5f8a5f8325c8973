"""The process-wide runtime: settings, broker, database and clock, installed once.

The application entry point (:func:`backlane.app.setup`, called by ``actors``)
builds it from the environment and installs it; tests build their own pieces and
install them with :func:`install`. The core reads it with :func:`get_runtime`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dramatiq

from backlane.core import startup
from backlane.core.clock import Clock
from backlane.core.config import load_section
from backlane.core.controls import Controls, apply_overrides
from backlane.db.engine import Database
from backlane.errors import SetupError, set_delay_ceiling
from backlane.messaging import signing
from backlane.messaging.broker import BacklaneBroker
from backlane.settings import Settings, SettingsError

if TYPE_CHECKING:
    from backlane.core.pipeline import Pipeline

logger = logging.getLogger("backlane.runtime")


@dataclass
class Runtime:
    settings: Settings
    broker: BacklaneBroker
    clock: Clock
    _database: Database | None = None
    #: Each pipeline's settings section by name, read from the environment on first use.
    configs: dict[str, Any] = field(default_factory=dict)
    #: Each pipeline's section with its runtime overrides: (base, overrides read, effective).
    _effective: dict[str, tuple[Any, Any, Any]] = field(default_factory=dict, repr=False)
    _controls: Controls | None = field(default=None, repr=False)

    def config(self, pipeline: Pipeline) -> Any:
        """``pipeline``'s settings section (tests may put their own in ``configs``), with the
        operators' runtime overrides (``backlane settings set``) over the environment's values."""
        base = self.configs.get(pipeline.name)
        if base is None:
            try:
                base = self.configs[pipeline.name] = load_section(pipeline.name, pipeline.config, pipeline.defaults)
            except SettingsError as exc:
                if startup.process_role() is not None:  # a worker or the clock: one line, no traceback
                    startup.refuse(str(exc))
                raise
        overrides = self.controls.state().overrides_of(pipeline.name)
        if not overrides:
            return base
        cached = self._effective.get(pipeline.name)
        if cached is not None and cached[0] is base and (cached[1] is overrides or cached[1] == overrides):
            return cached[2]
        try:
            effective = apply_overrides(pipeline.name, base, {key: o.value for key, o in overrides.items()})
        except SettingsError as exc:
            # Validated when set; refused now only if this release's bounds differ: the environment's values.
            logger.warning("runtime settings of %s not applied (%s); the environment's stand", pipeline.name, exc)
            effective = base
        self._effective[pipeline.name] = (base, overrides, effective)
        return effective

    @property
    def controls(self) -> Controls:
        """Pauses and runtime settings (:mod:`backlane.core.controls`), read every few seconds."""
        if self._controls is None:
            self._controls = Controls(self._controls_database, self.settings.controls.refresh_seconds)
        return self._controls

    def _controls_database(self) -> Database | None:
        """A worker or the clock reads the controls from the start; anything else (a command, a
        test) only once it has opened the database, so reading them never creates one."""
        if self._database is None and startup.process_role() is not None:
            return self.database
        return self._database

    @property
    def database_url(self) -> str:
        """The database's URL: the one in use (tests may install their own), else the setting's."""
        if self._database is not None:
            return self._database.url
        return self.settings.database.url.get_secret_value()

    @property
    def open_database(self) -> Database | None:
        """The database if something already opened it, else None (never creates one)."""
        return self._database

    @property
    def database(self) -> Database:
        """Created on first use, so importing actors never opens a connection."""
        if self._database is None:
            db = self.settings.database
            self._database = Database(
                db.url.get_secret_value(), pool_size=db.pool_size, echo=db.echo, connect_timeout=db.connect_timeout
            )
        return self._database


_lock = threading.Lock()
_runtime: Runtime | None = None


def install(runtime: Runtime) -> Runtime:
    global _runtime
    with _lock:
        _runtime = runtime
        dramatiq.set_broker(runtime.broker)
        set_delay_ceiling(runtime.settings.retries.max_delay_seconds)  # no server-named wait beyond it
        signing.set_default_key(signing.key_of(runtime.settings))  # what a keyless broker signs with
    return runtime


def installed_runtime() -> Runtime | None:
    with _lock:
        return _runtime


def get_runtime() -> Runtime:
    """The installed runtime; the application entry point installs it (importing ``actors`` does)."""
    runtime = installed_runtime()
    if runtime is None:
        raise SetupError(
            "no backlane runtime installed: load the application first "
            "(backlane.app.load_app(), or import the module that calls backlane.app.setup())"
        )
    return runtime
