"""masstransit_faults: the Fault<T> owed for each MassTransit message that failed for good

Revision ID: 0009_conversation
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_conversation"
down_revision = "0009_listed_items"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "masstransit_faults",
        sa.Column("faulted_key", sa.String(300), primary_key=True),
        sa.Column("pipeline", sa.String(100), nullable=False),
        sa.Column("item_id", sa.String(100), nullable=True),
        sa.Column("exchange", sa.String(255), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("masstransit_faults")
