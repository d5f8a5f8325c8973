"""The health vocabulary a pipeline reports in, and the typed row of its ``health`` hook.

A pipeline's ``health`` hook returns :class:`HealthRow` values: the worker's ``/health``
serves them as JSON (:meth:`HealthRow.as_json`), ``backlane status`` prints each as its
name, its health and its ``summary``, and the dashboard shows its ``columns``. None of
them knows which pipeline a row came from or what its details mean, so a new pipeline's
health needs no change outside its folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Health(StrEnum):
    """``disabled``: switched off on purpose, so it makes nothing unhealthy. A row whose
    health could not be read has ``None`` (shown as ``?``, never as healthy)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    DISABLED = "disabled"
    PAUSED = "paused"  # by an operator (backlane pause): expected to do nothing until resumed


#: Worst last: the overall status is the worst of its parts.
SEVERITY = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNHEALTHY: 2}


def worst(statuses: list[str | None]) -> Health | None:
    """The worst of ``statuses``: unhealthy beats unknown (None) beats degraded beats healthy;
    disabled and paused parts do not count, and nothing at all is healthy. A word outside the vocabulary
    counts as unhealthy: a typo must not pass for health."""
    counted = [s for s in statuses if s not in (Health.DISABLED, Health.PAUSED)]
    if Health.UNHEALTHY in counted or any(s is not None and s not in SEVERITY for s in counted):
        return Health.UNHEALTHY
    if None in counted:
        return None
    known = [Health(s) for s in counted if s is not None]
    return max(known, key=lambda s: SEVERITY[s], default=Health.HEALTHY)


@dataclass(frozen=True)
class HealthRow:
    """One part of a pipeline's health: a catalog section, an upstream API."""

    name: str
    health: Health | None
    #: What ``backlane status`` prints after the name and the health, in a few words
    #: ("every 30m, last ok 2m ago, held by rate limit catalog for 29m").
    summary: str = ""
    #: The dashboard's cells for this row, label -> text, in order (every row of a pipeline
    #: should give the same labels: they are the table's header).
    columns: Mapping[str, str] = field(default_factory=dict)
    #: Machine-readable details, JSON values, served by /health and ``status --json`` beside
    #: ``name`` and ``health``.
    details: Mapping[str, Any] = field(default_factory=dict)
    #: What ``backlane trigger PIPELINE TARGET`` takes to act on this row (the dashboard's
    #: button beside it), when the pipeline has a trigger for it.
    trigger_target: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "health": self.health, **self.details}


def unknown(name: str, error: str) -> HealthRow:
    """The row of a hook that failed: unknown health, naming the error."""
    return HealthRow(name, None, summary=f"error={error}", columns={"error": error}, details={"error": error})


def ago(seconds: float | None) -> str:
    """'never', '45s ago', '12m ago' or '3h ago': how old a last success is, for a summary."""
    if seconds is None:
        return "never"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def remaining(end: datetime, now: datetime) -> str:
    """'for 59s' or 'for 29m': how long a hold has left, for a summary."""
    seconds = max(0, int((end - now).total_seconds()))
    return f"for {seconds}s" if seconds < 120 else f"for {seconds // 60}m"
