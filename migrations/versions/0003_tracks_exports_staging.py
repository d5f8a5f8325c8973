"""tracks, exports (with run history and outage memory) and staging batches

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TZ = sa.DateTime(timezone=True)
DELETED = "status = 'deleted'"
OPEN_BATCH = "status IN ('pending', 'processing')"


def upgrade() -> None:
    op.create_table(
        "tracks",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("audio_key", sa.String(500), nullable=False),
        sa.Column("waveform_key", sa.String(500), nullable=True),
        sa.Column("delete_after", TZ, nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("lease_until", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index(
        "ix_tracks_due", "tracks", ["delete_after"], postgresql_where=sa.text(DELETED), sqlite_where=sa.text(DELETED)
    )

    op.create_table(
        "exports",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("next_run_at", TZ, nullable=True),
        sa.Column("lease_until", TZ, nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("next_page", sa.Integer(), nullable=False),
        sa.Column("rows_written", sa.Integer(), nullable=False),
        sa.Column("partial_bytes", sa.BigInteger(), nullable=False),
        sa.Column("last_success_at", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_exports_due", "exports", ["next_run_at"])
    op.create_table(
        "export_runs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("export_id", BigId, sa.ForeignKey("exports.id", ondelete="CASCADE"), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("first_page", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("file_path", sa.String(1000), nullable=True),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_export_runs_export", "export_runs", ["export_id", "started_at"])
    op.create_table(
        "service_outages",
        sa.Column("service", sa.String(100), primary_key=True),
        sa.Column("down_since", TZ, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("checked_at", TZ, nullable=True),
    )

    op.create_table(
        "staging_batches",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("processor", sa.String(100), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("lease_until", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
    )
    op.create_index(
        "ix_staging_batches_due",
        "staging_batches",
        ["processor", "created_at"],
        postgresql_where=sa.text(OPEN_BATCH),
        sqlite_where=sa.text(OPEN_BATCH),
    )


def downgrade() -> None:
    op.drop_index("ix_staging_batches_due", table_name="staging_batches")
    op.drop_table("staging_batches")
    op.drop_table("service_outages")
    op.drop_index("ix_export_runs_export", table_name="export_runs")
    op.drop_table("export_runs")
    op.drop_index("ix_exports_due", table_name="exports")
    op.drop_table("exports")
    op.drop_index("ix_tracks_due", table_name="tracks")
    op.drop_table("tracks")
