"""orders: indexes for the dashboard's lookups (items by status, newest first; by external id)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_orders_status_id", "orders", ["status", "id"])
    op.create_index("ix_orders_external_order_id", "orders", ["external_order_id"])


def downgrade() -> None:
    op.drop_index("ix_orders_external_order_id", table_name="orders")
    op.drop_index("ix_orders_status_id", table_name="orders")
