"""served predictions, label files and quarantined labels

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "served_predictions",
        sa.Column("prediction_id", sa.String(128), primary_key=True),
        sa.Column("write_id", sa.Integer(), nullable=False),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("features", sa.Text(), nullable=False),
        sa.Column("prediction", sa.String(200), nullable=False),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("labelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("label_origin", sa.String(500), nullable=True),
        sa.Column("position", sa.Integer(), nullable=True),
    )
    op.create_index("ix_served_predictions_write_id", "served_predictions", ["write_id"])
    op.create_index("ix_served_predictions_served_at", "served_predictions", ["served_at"])
    op.create_index("ix_served_predictions_position", "served_predictions", ["position"])
    op.create_table(
        "label_files",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(1000), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("joined", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("conflicts", sa.Integer(), nullable=False),
        sa.Column("unknown", sa.Integer(), nullable=False),
        sa.Column("invalid", sa.Integer(), nullable=False),
        sa.UniqueConstraint("sha256", name="uq_label_files_sha256"),
    )
    op.create_table(
        "quarantined_labels",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("origin", sa.String(500), nullable=False),
        sa.Column("row", sa.Integer(), nullable=True),
        sa.Column("prediction_id", sa.String(128), nullable=True),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_quarantined_labels_prediction_id", "quarantined_labels", ["prediction_id"]
    )
    op.create_index("ix_quarantined_labels_reason", "quarantined_labels", ["reason"])
    op.create_table(
        "serving_reports",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("champion_version", sa.Integer(), nullable=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("labelled_rows", sa.Integer(), nullable=False),
        sa.Column("estimated_accuracy", sa.Float(), nullable=True),
        sa.Column("estimated_lower", sa.Float(), nullable=True),
        sa.Column("estimated_upper", sa.Float(), nullable=True),
        sa.Column("reference_accuracy", sa.Float(), nullable=True),
        sa.Column("realised_accuracy", sa.Float(), nullable=True),
        sa.Column("realised_rows", sa.Integer(), nullable=True),
        sa.Column("data_drift", sa.Boolean(), nullable=False),
        sa.Column("prediction_drift", sa.Boolean(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
    )
    op.create_index("ix_serving_reports_created_at", "serving_reports", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_serving_reports_created_at", "serving_reports")
    op.drop_table("serving_reports")
    op.drop_index("ix_quarantined_labels_reason", "quarantined_labels")
    op.drop_index("ix_quarantined_labels_prediction_id", "quarantined_labels")
    op.drop_table("quarantined_labels")
    op.drop_table("label_files")
    op.drop_index("ix_served_predictions_position", "served_predictions")
    op.drop_index("ix_served_predictions_served_at", "served_predictions")
    op.drop_index("ix_served_predictions_write_id", "served_predictions")
    op.drop_table("served_predictions")
