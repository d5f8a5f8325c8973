"""The catalog: one bookkeeping row per section, the provider's categories and brands
(with products, prices and brand↔category links), and every other source's rows.

Rows are keyed by the source's external id, so a refresh upserts instead of
re-inserting, and ``updated_at`` moves only when something really changed.
Brand↔category links name the category by its external id: the two sections
refresh independently, and a link to a category not fetched yet is kept rather
than dropped. History rows carry ``occurred_at``, which retention prunes on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backlane import Base, BigId


class CatalogSection(Base):
    """When a section last refreshed and how it went; its lease while a refresh runs."""

    __tablename__ = "catalog_sections"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    #: While set and in the future a refresh holds one of the max_concurrent slots.
    lease_until: Mapped[datetime | None]
    #: Names the one refresh message allowed to work on the section; others are stale.
    lease_token: Mapped[str | None] = mapped_column(String(36))
    #: Its message waits for a retry (rate limit, breaker, backoff): discover leaves it alone until then.
    hold_until: Mapped[datetime | None]
    #: Set by `backlane trigger catalog SECTION`: due now whatever its interval.
    requested_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_duration_ms: Mapped[float | None] = mapped_column(Float)
    #: succeeded, failed (retries spent or permanent), retrying, waiting.
    last_outcome: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(Text)
    #: inserted, updated, unchanged, removed, pruned of the last successful refresh.
    last_counts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    #: The refresh is written but its CatalogSectionRefreshed event not yet confirmed.
    event_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]


class CatalogCategory(Base):
    __tablename__ = "catalog_categories"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    parent_external_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CatalogBrand(Base):
    __tablename__ = "catalog_brands"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CatalogBrandCategory(Base):
    """A brand is listed in a category (by the category's external id)."""

    __tablename__ = "catalog_brand_categories"

    brand_id: Mapped[int] = mapped_column(BigId, ForeignKey("catalog_brands.id", ondelete="CASCADE"), primary_key=True)
    category_external_id: Mapped[str] = mapped_column(String(100), primary_key=True)


class CatalogProduct(Base):
    __tablename__ = "catalog_products"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(100), unique=True)
    brand_id: Mapped[int] = mapped_column(BigId, ForeignKey("catalog_brands.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(300))
    sku: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index("ix_catalog_products_brand", "brand_id"),)


class CatalogPrice(Base):
    """A product's price in one currency, in minor units (cents) so comparing is exact."""

    __tablename__ = "catalog_prices"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    product_id: Mapped[int] = mapped_column(BigId, ForeignKey("catalog_products.id", ondelete="CASCADE"))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("product_id", "currency", name="uq_catalog_prices_product_currency"),)


class CatalogRecord(Base):
    """A row of any other section (stock, sales, lots, …) as the source sent it."""

    __tablename__ = "catalog_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    section: Mapped[str] = mapped_column(String(50))
    external_id: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: When it happened (history sections): retention prunes on it.
    occurred_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("section", "external_id", name="uq_catalog_records_section_external"),
        Index("ix_catalog_records_retention", "section", "occurred_at"),
    )


class CatalogRun(Base):
    """One refresh of one section, kept as history: the data lineage the refresher promised
    (when, from which source, what it read and changed, how it ended and why)."""

    __tablename__ = "catalog_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    section: Mapped[str] = mapped_column(String(50))
    #: The source it was fetched from and the URL asked.
    source: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    #: succeeded, failed (for good), retrying or waiting (this attempt; the item goes on).
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    #: Rows the source sent, and what the refresh wrote (None when it failed before).
    rows_read: Mapped[int | None] = mapped_column(Integer)
    inserted: Mapped[int | None] = mapped_column(Integer)
    updated: Mapped[int | None] = mapped_column(Integer)
    removed: Mapped[int | None] = mapped_column(Integer)
    pruned: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("ix_catalog_runs_section_started", "section", "started_at"),)
