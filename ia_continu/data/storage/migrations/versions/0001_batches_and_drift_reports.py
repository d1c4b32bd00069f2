"""batches and drift reports

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("ingest_key", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("rows", sa.JSON(), nullable=False),
        sa.UniqueConstraint("source", "position", name="uq_batches_source_position"),
        sa.UniqueConstraint("ingest_key", name="uq_batches_ingest_key"),
    )
    op.create_index("ix_batches_source", "batches", ["source"])
    op.create_table(
        "drift_reports",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("batch_id", sa.Integer(), sa.ForeignKey("batches.id"), nullable=False),
        sa.Column("champion_version", sa.Integer(), nullable=True),
        sa.Column("data_drift", sa.Boolean(), nullable=False),
        sa.Column("concept_drift", sa.Boolean(), nullable=False),
        sa.Column("retrain", sa.Boolean(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_drift_reports_created_at", "drift_reports", ["created_at"])
    op.create_index("ix_drift_reports_batch_id", "drift_reports", ["batch_id"])


def downgrade() -> None:
    op.drop_table("drift_reports")
    op.drop_table("batches")
