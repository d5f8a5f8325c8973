"""exports: database-level defaults (a plain SQL insert defines an export) and a per-export interval

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None

NOW = sa.text("CURRENT_TIMESTAMP")
TZ = sa.DateTime(timezone=True)
#: column -> (type, server default) set by this revision.
DEFAULTS: dict[str, tuple[sa.types.TypeEngine[object], sa.TextClause]] = {
    "next_page": (sa.Integer(), sa.text("1")),
    "rows_written": (sa.Integer(), sa.text("0")),
    "partial_bytes": (sa.BigInteger(), sa.text("0")),
    "created_at": (TZ, NOW),
    "updated_at": (TZ, NOW),
}


def upgrade() -> None:
    # Batch mode: SQLite cannot alter a column's default in place (the table is copied).
    with op.batch_alter_table("exports") as batch:
        for column, (type_, default) in DEFAULTS.items():
            batch.alter_column(column, existing_type=type_, existing_nullable=False, server_default=default)
        batch.add_column(sa.Column("interval_seconds", sa.Float(), nullable=True))
        batch.create_check_constraint("ck_exports_format", "format IN ('csv', 'jsonl')")
        batch.create_check_constraint("ck_exports_interval", "interval_seconds IS NULL OR interval_seconds > 0")


def downgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.drop_constraint("ck_exports_interval", type_="check")
        batch.drop_constraint("ck_exports_format", type_="check")
        batch.drop_column("interval_seconds")
        for column, (type_, _) in DEFAULTS.items():
            batch.alter_column(column, existing_type=type_, existing_nullable=False, server_default=None)
