"""Server: upload possession in the database (uploads), shared by server processes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

NAME = sa.String(255)
OBJ_ID = sa.String(128)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # (subject, object): the subject sent the object's bytes (verified against its id)
    # at `at`, the latest such upload. Possession before this revision was kept in each
    # server process's memory; nothing to carry over.
    op.create_table(
        "uploads",
        sa.Column("subject", NAME, nullable=False),
        sa.Column("object_id", OBJ_ID, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("subject", "object_id", name="pk_uploads"),
    )
    op.create_index("ix_uploads_at", "uploads", ["at"])


def downgrade() -> None:
    op.drop_index("ix_uploads_at", table_name="uploads")
    op.drop_table("uploads")
