"""catalog sections, categories, brands with products, prices and links, other sources' records

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "catalog_sections",
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("lease_until", TZ, nullable=True),
        sa.Column("lease_token", sa.String(36), nullable=True),
        sa.Column("hold_until", TZ, nullable=True),
        sa.Column("requested_at", TZ, nullable=True),
        sa.Column("claimed_at", TZ, nullable=True),
        sa.Column("last_attempt_at", TZ, nullable=True),
        sa.Column("last_success_at", TZ, nullable=True),
        sa.Column("last_duration_ms", sa.Float(), nullable=True),
        sa.Column("last_outcome", sa.String(16), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_counts", sa.JSON(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("event_pending", sa.Boolean(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "catalog_categories",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("external_id", sa.String(100), nullable=False, unique=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("parent_external_id", sa.String(100), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "catalog_brands",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("external_id", sa.String(100), nullable=False, unique=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "catalog_brand_categories",
        sa.Column("brand_id", BigId, sa.ForeignKey("catalog_brands.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("category_external_id", sa.String(100), primary_key=True),
    )
    op.create_table(
        "catalog_products",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("external_id", sa.String(100), nullable=False, unique=True),
        sa.Column("brand_id", BigId, sa.ForeignKey("catalog_brands.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("sku", sa.String(100), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_catalog_products_brand", "catalog_products", ["brand_id"])
    op.create_table(
        "catalog_prices",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("product_id", BigId, sa.ForeignKey("catalog_products.id", ondelete="CASCADE"), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("product_id", "currency", name="uq_catalog_prices_product_currency"),
    )
    op.create_table(
        "catalog_records",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("section", sa.String(50), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("occurred_at", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("section", "external_id", name="uq_catalog_records_section_external"),
    )
    op.create_index("ix_catalog_records_retention", "catalog_records", ["section", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_catalog_records_retention", table_name="catalog_records")
    op.drop_table("catalog_records")
    op.drop_table("catalog_prices")
    op.drop_index("ix_catalog_products_brand", table_name="catalog_products")
    op.drop_table("catalog_products")
    op.drop_table("catalog_brand_categories")
    op.drop_table("catalog_brands")
    op.drop_table("catalog_categories")
    op.drop_table("catalog_sections")
