"""Typed tables, one module per pipeline. The row is the source of truth; messages
carry only its id.

Times are stored as UTC. Every table a discover actor claims from has a
``lease_until`` column and a partial index matching its due condition, declared
beside the table so the claim queries in :mod:`backlane.db.claims` stay O(batch).
"""

from backlane.db.models.attempts import ItemAttempts
from backlane.db.models.base import Base, BigId
from backlane.db.models.catalog import (
    CatalogBrand,
    CatalogBrandCategory,
    CatalogCategory,
    CatalogPrice,
    CatalogProduct,
    CatalogRecord,
    CatalogSection,
)
from backlane.db.models.exports import Export, ExportFormat, ExportOutcome, ExportRun, ServiceOutage
from backlane.db.models.orders import UNSETTLED_ORDER_STATUSES, Order, OrderStatus
from backlane.db.models.resilience import CircuitBreakerRow, RateLimitRow
from backlane.db.models.staging import StagingBatch, StagingStatus
from backlane.db.models.tallies import PipelineTally
from backlane.db.models.tracks import Track, TrackStatus

__all__ = [
    "UNSETTLED_ORDER_STATUSES",
    "Base",
    "BigId",
    "CatalogBrand",
    "CatalogBrandCategory",
    "CatalogCategory",
    "CatalogPrice",
    "CatalogProduct",
    "CatalogRecord",
    "CatalogSection",
    "CircuitBreakerRow",
    "Export",
    "ExportFormat",
    "ExportOutcome",
    "ExportRun",
    "ItemAttempts",
    "Order",
    "OrderStatus",
    "PipelineTally",
    "RateLimitRow",
    "ServiceOutage",
    "StagingBatch",
    "StagingStatus",
    "Track",
    "TrackStatus",
]
