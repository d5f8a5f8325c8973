"""The photos table (both image-vectorization registrations): images and their embedding vectors.

Revision ID: photos_0001
Revises: (a branch of its own, label "photos")
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "photos_0001"
down_revision = None
branch_labels = ("photos",)
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TZ = sa.DateTime(timezone=True)
DUE = "status = 'pending'"


def upgrade() -> None:
    op.create_table(
        "photos",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("storage_key", sa.String(500), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False, server_default="image/jpeg"),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        # float32 little-endian values: BLOB on SQLite, bytea on PostgreSQL.
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        sa.Column("vector_dim", sa.Integer(), nullable=True),
        sa.Column("vector_norm", sa.Float(), nullable=True),
        sa.Column("model_version", sa.String(200), nullable=True),
        sa.Column("vectorized_at", TZ, nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("lease_until", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")),
    )
    op.create_index(
        "ix_photos_due", "photos", ["owner", "id"], postgresql_where=sa.text(DUE), sqlite_where=sa.text(DUE)
    )
    op.create_index("ix_photos_model", "photos", ["owner", "model_version", "vector_dim"])


def downgrade() -> None:
    op.drop_table("photos")
