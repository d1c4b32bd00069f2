"""api tokens and prediction log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("name", name="uq_api_tokens_name"),
    )
    op.create_table(
        "prediction_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n_requests", sa.Integer(), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("records", sa.Text(), nullable=False),  # JSON encoded by orjson
    )
    op.create_index("ix_prediction_log_last_at", "prediction_log", ["last_at"])


def downgrade() -> None:
    op.drop_index("ix_prediction_log_last_at", "prediction_log")
    op.drop_table("prediction_log")
    op.drop_table("api_tokens")
