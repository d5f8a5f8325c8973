"""orders: the MassTransit ids of the OrderCreated that created or claimed an order

Revision ID: 0010_order_envelope_ids
Revises: 0009_conversation
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_order_envelope_ids"
down_revision = "0009_conversation"
branch_labels = None
depends_on = None

COLUMNS = ("mt_message_id", "mt_conversation_id", "mt_correlation_id")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("orders", sa.Column(name, sa.String(36), nullable=True))
    op.create_index("ix_orders_mt_conversation_id", "orders", ["mt_conversation_id"])


def downgrade() -> None:
    op.drop_index("ix_orders_mt_conversation_id", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
