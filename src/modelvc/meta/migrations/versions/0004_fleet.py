"""Fleet: deployments (desired state) and replicas (reported state).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

NAME = sa.String(255)
ID = sa.String(64)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("name", NAME, nullable=False),
        sa.Column("model", NAME, nullable=False),
        sa.Column("channel", NAME, nullable=False),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("selector", sa.JSON(), nullable=False),
        sa.Column("version_id", ID, nullable=True),
        sa.Column("previous_id", ID, nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("pending_id", ID, nullable=True),
        sa.Column("pending_epoch", sa.Integer(), nullable=True),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_deployments"),
    )
    op.create_index("ix_deployments_model", "deployments", ["model"])
    op.create_table(
        "replicas",
        sa.Column("id", NAME, nullable=False),
        sa.Column("model", NAME, nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("serving_id", ID, nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("warm_id", ID, nullable=True),
        sa.Column("staged_id", ID, nullable=True),
        sa.Column("staged_epoch", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", "model", name="pk_replicas"),
    )


def downgrade() -> None:
    op.drop_table("replicas")
    op.drop_index("ix_deployments_model", "deployments")
    op.drop_table("deployments")
