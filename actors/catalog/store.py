"""Writing one fetched section: upsert by external id, touch only what changed.

Each row is compared with what is stored and written only when it differs, so a
refresh of unchanged data issues no INSERT, UPDATE or DELETE at all (and
``updated_at`` means "last really changed"). Rows the source no longer sends are
removed, except in history sections, whose rows go only when retention prunes
them. Everything happens in the caller's transaction: a refresh that fails
half-way leaves the last good data in place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from actors.catalog.models import (
    CatalogBrand,
    CatalogBrandCategory,
    CatalogCategory,
    CatalogPrice,
    CatalogProduct,
    CatalogRecord,
)
from actors.catalog.sections import SectionSpec
from backlane.core.clock import as_utc
from contracts.catalog import BrandPayload, CategoryPayload, RecordPayload


@dataclass
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    pruned: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.updated or self.removed or self.pruned)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _set_changed(row: Any, values: dict[str, Any], now: datetime, counts: Counts) -> None:
    """Assign only differing values; count the row as updated or unchanged."""
    changed = {key: value for key, value in values.items() if getattr(row, key) != value}
    if changed:
        for key, value in changed.items():
            setattr(row, key, value)
        row.updated_at = now
        counts.updated += 1
    else:
        counts.unchanged += 1


def apply_section(
    session: Session, spec: SectionSpec, items: list[dict[str, Any]], *, now: datetime, retention: timedelta | None
) -> Counts:
    """Make the stored section equal to ``items``; returns what it took."""
    counts = Counts()
    if spec.kind == "categories":
        _apply_categories(session, [CategoryPayload.model_validate(i) for i in items], now, counts)
    elif spec.kind == "brands":
        _apply_brands(session, [BrandPayload.model_validate(i) for i in items], now, counts)
    else:
        cutoff = now - retention if retention is not None else None
        _apply_records(session, spec, [RecordPayload.model_validate(i) for i in items], now, cutoff, counts)
    session.flush()
    return counts


def _apply_categories(session: Session, items: list[CategoryPayload], now: datetime, counts: Counts) -> None:
    stored = {c.external_id: c for c in session.scalars(select(CatalogCategory))}
    for item in _unique(items):
        values = {"name": item.name, "parent_external_id": item.parent_id}
        row = stored.pop(item.id, None)
        if row is None:
            session.add(CatalogCategory(external_id=item.id, created_at=now, updated_at=now, **values))
            counts.inserted += 1
        else:
            _set_changed(row, values, now, counts)
    _remove(session, stored.values(), counts)


def _apply_brands(session: Session, items: list[BrandPayload], now: datetime, counts: Counts) -> None:
    brands = {b.external_id: b for b in session.scalars(select(CatalogBrand))}
    products = {p.external_id: p for p in session.scalars(select(CatalogProduct))}
    prices: dict[int, dict[str, CatalogPrice]] = {}
    for price in session.scalars(select(CatalogPrice)):
        prices.setdefault(price.product_id, {})[price.currency] = price
    links: dict[int, set[str]] = {}
    for link in session.scalars(select(CatalogBrandCategory)):
        links.setdefault(link.brand_id, set()).add(link.category_external_id)

    seen_products: set[str] = set()
    for item in _unique(items):
        brand = brands.pop(item.id, None)
        if brand is None:
            brand = CatalogBrand(external_id=item.id, name=item.name, created_at=now, updated_at=now)
            session.add(brand)
            session.flush()  # its id, for products and links
            counts.inserted += 1
        else:
            _set_changed(brand, {"name": item.name}, now, counts)
        _sync_links(session, brand.id, links.pop(brand.id, set()), set(item.categories), counts)
        for product_item in _unique(item.products):
            if product_item.id in seen_products:
                continue  # a product listed under two brands keeps the first
            seen_products.add(product_item.id)
            values = {"brand_id": brand.id, "name": product_item.name, "sku": product_item.sku}
            product = products.pop(product_item.id, None)
            if product is None:
                product = CatalogProduct(external_id=product_item.id, created_at=now, updated_at=now, **values)
                session.add(product)
                session.flush()
                counts.inserted += 1
            else:
                _set_changed(product, values, now, counts)
            wanted = {p.currency.upper(): _minor_units(p.amount) for p in product_item.prices}
            _sync_prices(session, product.id, prices.pop(product.id, {}), wanted, now, counts)
    _remove(session, products.values(), counts)  # their prices go with them (ON DELETE CASCADE)
    session.flush()  # products first: a brand's removal would cascade to them in the database
    _remove(session, brands.values(), counts)


def _sync_links(session: Session, brand_id: int, stored: set[str], wanted: set[str], counts: Counts) -> None:
    for category in sorted(wanted - stored):
        session.add(CatalogBrandCategory(brand_id=brand_id, category_external_id=category))
        counts.inserted += 1
    gone = stored - wanted
    if gone:
        session.execute(
            delete(CatalogBrandCategory)
            .where(CatalogBrandCategory.brand_id == brand_id, CatalogBrandCategory.category_external_id.in_(gone))
            .execution_options(synchronize_session=False)
        )
        counts.removed += len(gone)
    counts.unchanged += len(stored & wanted)


def _sync_prices(
    session: Session,
    product_id: int,
    stored: dict[str, CatalogPrice],
    wanted: dict[str, int],
    now: datetime,
    counts: Counts,
) -> None:
    for currency, amount in wanted.items():
        price = stored.pop(currency, None)
        if price is None:
            session.add(CatalogPrice(product_id=product_id, currency=currency, amount_minor=amount, updated_at=now))
            counts.inserted += 1
        else:
            _set_changed(price, {"amount_minor": amount}, now, counts)
    _remove(session, stored.values(), counts)


def _apply_records(
    session: Session,
    spec: SectionSpec,
    items: list[RecordPayload],
    now: datetime,
    cutoff: datetime | None,
    counts: Counts,
) -> None:
    query = select(CatalogRecord).where(CatalogRecord.section == spec.name)
    stored: dict[str, CatalogRecord] = {r.external_id: r for r in session.scalars(query)}
    if cutoff is not None:  # rows are all loaded anyway: prune them here, no DELETE when none is due
        expired = [r for r in stored.values() if r.occurred_at is not None and as_utc(r.occurred_at) < cutoff]
        for old in expired:
            session.delete(stored.pop(old.external_id))
        counts.pruned += len(expired)
    for item in _unique(items, key=lambda i: i.external_id):
        occurred = as_utc(item.occurred_at) if item.occurred_at is not None else None
        if cutoff is not None and occurred is not None and occurred < cutoff:
            continue  # past retention: not kept
        data = item.model_dump(mode="json", exclude_unset=True)
        row = stored.pop(item.external_id, None)
        if row is None:
            record = CatalogRecord(
                section=spec.name,
                external_id=item.external_id,
                data=data,
                occurred_at=occurred,
                created_at=now,
                updated_at=now,
            )
            session.add(record)
            counts.inserted += 1
        else:
            stored_at = as_utc(row.occurred_at) if row.occurred_at is not None else None
            _set_changed(row, {"data": data}, now, counts)
            if stored_at != occurred:
                row.occurred_at = occurred
    if not spec.history:
        _remove(session, stored.values(), counts)


def _remove(session: Session, rows: Iterable[Any], counts: Counts) -> None:
    for row in rows:
        session.delete(row)
        counts.removed += 1


def _unique(items: list[Any], key: Any = None) -> list[Any]:
    """The last of each external id wins, as when the source repeats one."""
    by_id: dict[Any, Any] = {}
    for item in items:
        by_id[key(item) if key else item.id] = item
    return list(by_id.values())


def _minor_units(amount: str) -> int:
    return int(Decimal(amount) * 100)
