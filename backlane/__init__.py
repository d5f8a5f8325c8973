"""backlane: scheduled discovery and per-item background work on Dramatiq and RabbitMQ.

What a pipeline's author needs, in one import::

    from backlane import Context, ItemTable, Pipeline, Purpose, TableSettings, register

The names are loaded when first used (PEP 562), so ``import backlane`` stays cheap for
the CLI and the clock, and a module of the framework importing a sibling never runs
this list. Everything else under ``backlane.`` is the framework's own.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    # declaring a pipeline
    "Pipeline": "backlane.core.pipeline",
    "Context": "backlane.core.pipeline",
    "Inbox": "backlane.core.pipeline",
    "Command": "backlane.core.pipeline",
    "Purpose": "backlane.core.pipeline",
    "register": "backlane.core.registry",
    "ItemTable": "backlane.core.table",
    "TableSettings": "backlane.core.table",
    "PipelineSettings": "backlane.settings",
    "row_id": "backlane.core.items",
    # its tables
    "Base": "backlane.db.models.base",
    "BigId": "backlane.db.models.base",
    "literal_in": "backlane.db.models.base",
    # its health
    "Health": "backlane.core.health",
    "HealthRow": "backlane.core.health",
    # what its functions raise (backlane.errors classifies everything else)
    "TransientError": "backlane.errors",
    "DelayedRetry": "backlane.errors",
    "NotReady": "backlane.errors",
    "PermanentError": "backlane.errors",
    "MalformedMessage": "backlane.errors",
    "UnknownItem": "backlane.errors",
    "Problem": "backlane.errors",
}

__all__ = [
    "Base",
    "BigId",
    "Command",
    "Context",
    "DelayedRetry",
    "Health",
    "HealthRow",
    "Inbox",
    "ItemTable",
    "MalformedMessage",
    "NotReady",
    "PermanentError",
    "Pipeline",
    "PipelineSettings",
    "Problem",
    "Purpose",
    "TableSettings",
    "TransientError",
    "UnknownItem",
    "literal_in",
    "register",
    "row_id",
]

if TYPE_CHECKING:
    from backlane.core.health import Health, HealthRow
    from backlane.core.items import row_id
    from backlane.core.pipeline import Command, Context, Inbox, Pipeline, Purpose
    from backlane.core.registry import register
    from backlane.core.table import ItemTable, TableSettings
    from backlane.db.models.base import Base, BigId, literal_in
    from backlane.errors import (
        DelayedRetry,
        MalformedMessage,
        NotReady,
        PermanentError,
        Problem,
        TransientError,
        UnknownItem,
    )
    from backlane.settings import PipelineSettings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'backlane' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # asked once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
