"""Catalog wire formats: the CatalogSectionRefreshed event backlane publishes, and the
payloads the catalog sources answer with.

CatalogSectionRefreshed goes to the durable fanout exchange ``catalog.events``
(settings: ``catalog.event_exchange``) as a plain JSON body, one per successful
refresh, whether or not anything changed (``changed`` says). Other services bind
their own queue to the exchange and drop their caches of that section.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Where CatalogSectionRefreshed is published (default of catalog.event_exchange).
CATALOG_EVENTS_EXCHANGE = "catalog.events"


class CatalogSectionRefreshed(BaseModel):
    """A catalog section was refreshed from its source."""

    model_config = ConfigDict(strict=True, extra="forbid", title="CatalogSectionRefreshed")

    version: Literal[1] = Field(description="Contract version; only 1 exists.")
    section: str = Field(description="Section name, e.g. brands, erp_stock, sales.")
    source: str = Field(description="The source it came from: catalog, erp, eshop, logistics.")
    refreshed_at: datetime = Field(strict=False, description="When the refresh was written (ISO 8601, UTC).")
    changed: bool = Field(description="Whether any row was inserted, updated, removed or pruned.")
    inserted: int = Field(ge=0)
    updated: int = Field(ge=0)
    unchanged: int = Field(ge=0)
    removed: int = Field(ge=0, description="Rows the source no longer has.")
    pruned: int = Field(ge=0, description="History rows older than the section's retention.")
    duration_ms: float = Field(ge=0, strict=False)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PricePayload(_Payload):
    currency: str = Field(min_length=3, max_length=3)
    amount: str = Field(pattern=r"^\d+(\.\d{1,2})?$", description="Decimal amount, e.g. 12.50.")


class ProductPayload(_Payload):
    id: str = Field(min_length=1, max_length=100)
    name: str = Field(max_length=300)
    sku: str | None = Field(default=None, max_length=100)
    prices: list[PricePayload] = []


class BrandPayload(_Payload):
    id: str = Field(min_length=1, max_length=100)
    name: str = Field(max_length=300)
    categories: list[str] = Field(default=[], description="External ids of the brand's categories.")
    products: list[ProductPayload] = []


class CategoryPayload(_Payload):
    id: str = Field(min_length=1, max_length=100)
    name: str = Field(max_length=300)
    parent_id: str | None = Field(default=None, max_length=100)


class RecordPayload(BaseModel):
    """A row of any other section: an id, when it happened (history), and its fields as sent."""

    model_config = ConfigDict(extra="allow")

    id: str | int
    occurred_at: datetime | None = None

    @property
    def external_id(self) -> str:
        return str(self.id)


class SectionPayload(BaseModel):
    """What every source endpoint answers: ``{"items": [...]}``."""

    model_config = ConfigDict(extra="ignore")

    items: list[dict[str, Any]]
