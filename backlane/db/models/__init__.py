"""The framework's own tables: item attempts, circuit breakers and rate limits, tallies, operator controls.

A pipeline's tables live in its folder (``actors/<name>/models.py``) on the same
:class:`Base`, so one metadata holds every table the application's migrations
create. Times are stored as UTC. Every table a discover actor claims from has a
``lease_until`` column and a partial index matching its due condition, declared
beside the table so the claim queries in :mod:`backlane.db.claims` stay O(batch).
"""

from backlane.db.models.attempts import ItemAttempts
from backlane.db.models.base import Base, BigId, literal_in
from backlane.db.models.controls import AuditEvent, BulkJob, Pause, SettingOverride
from backlane.db.models.listed import ListedItem
from backlane.db.models.masstransit import MassTransitFault
from backlane.db.models.resilience import CircuitBreakerRow, RateLimitRow
from backlane.db.models.tallies import PipelineTally

__all__ = [
    "AuditEvent",
    "Base",
    "BigId",
    "BulkJob",
    "CircuitBreakerRow",
    "ItemAttempts",
    "ListedItem",
    "MassTransitFault",
    "Pause",
    "PipelineTally",
    "RateLimitRow",
    "SettingOverride",
    "literal_in",
]
