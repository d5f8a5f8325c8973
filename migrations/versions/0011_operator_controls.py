"""operator controls: pauses, runtime setting overrides, the audit trail, bulk jobs; catalog runs

Revision ID: 0011_operator_controls
Revises: 0010_order_envelope_ids
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_operator_controls"
down_revision = "0010_order_envelope_ids"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pauses",
        sa.Column("pipeline", sa.String(100), primary_key=True),
        sa.Column("part", sa.String(200), primary_key=True),
        sa.Column("paused_at", WHEN, nullable=False),
        sa.Column("paused_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    op.create_table(
        "setting_overrides",
        sa.Column("pipeline", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("set_at", WHEN, nullable=False),
        sa.Column("set_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_table(
        "bulk_jobs",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("started_at", WHEN, nullable=True),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("stop_requested", sa.Boolean(), nullable=False),
        sa.Column("lease_until", WHEN, nullable=True),
        sa.Column("report", sa.Text(), nullable=False),
    )
    op.create_index("ix_bulk_jobs_created_at", "bulk_jobs", ["created_at"])
    op.create_table(
        "catalog_runs",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("section", sa.String(50), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("rows_read", sa.Integer(), nullable=True),
        sa.Column("inserted", sa.Integer(), nullable=True),
        sa.Column("updated", sa.Integer(), nullable=True),
        sa.Column("removed", sa.Integer(), nullable=True),
        sa.Column("pruned", sa.Integer(), nullable=True),
    )
    op.create_index("ix_catalog_runs_section_started", "catalog_runs", ["section", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_catalog_runs_section_started", table_name="catalog_runs")
    op.drop_table("catalog_runs")
    op.drop_index("ix_bulk_jobs_created_at", table_name="bulk_jobs")
    op.drop_table("bulk_jobs")
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("setting_overrides")
    op.drop_table("pauses")
