"""The product API's payloads, as the product export reads them (no I/O here)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class Product(BaseModel):
    """One product. The field order is the export's column order."""

    model_config = ConfigDict(extra="ignore", title="Product")

    id: int
    sku: str
    name: str
    category: str
    #: Kept as a decimal so the export writes exactly what the API said (12.30, not 12.3).
    price: Decimal
    stock: int


class ProductPage(BaseModel):
    """One page of GET /products?page=N&page_size=M."""

    model_config = ConfigDict(extra="ignore", title="ProductPage")

    page: int = Field(ge=1)
    total: int = Field(ge=0)
    has_next: bool
    items: list[Product]
