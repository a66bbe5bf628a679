"""Fleet: the traffic share of a canary trial gets a column of its own.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A canary by share of traffic: every member serves the pending version to this
    # share of request keys while the trial runs (NULL otherwise). Before, the share
    # rode in `rolled` as a "*share=F" entry; a trial in flight across the upgrade is
    # not carried over (the controller that ran it is stopped to upgrade anyway).
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("share", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("share")
