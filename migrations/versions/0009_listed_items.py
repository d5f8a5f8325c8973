"""listed_items: claims and final failures of items a pipeline lists itself (objects in a store)

Revision ID: 0009_listed_items
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_listed_items"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "listed_items",
        sa.Column("pipeline", sa.String(100), primary_key=True),
        sa.Column("item_hash", sa.String(64), primary_key=True),
        sa.Column("item", sa.Text(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_reason", sa.Text(), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("listed_items")
