"""quarantined batches

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarantined_batches",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("ingest_key", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("failures", sa.JSON(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("rows", sa.JSON(), nullable=False),
        sa.UniqueConstraint(
            "source", "position", name="uq_quarantined_batches_source_position"
        ),
        sa.UniqueConstraint("ingest_key", name="uq_quarantined_batches_ingest_key"),
    )
    op.create_index("ix_quarantined_batches_source", "quarantined_batches", ["source"])


def downgrade() -> None:
    op.drop_index("ix_quarantined_batches_source", "quarantined_batches")
    op.drop_table("quarantined_batches")
