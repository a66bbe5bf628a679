"""Fleet: per-replica targets for the rolling strategy (deployments.rolled).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Replica ids already moved to the pending version during a rolling rollout.
    op.add_column("deployments", sa.Column("rolled", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("deployments", "rolled")
