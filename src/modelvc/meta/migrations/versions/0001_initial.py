"""Initial schema: repo_info, models, versions, refs, ref_moves, objects, version_objects.

Revision ID: 0001
Revises:
Create Date: 2026-05-01

Written out in full (not derived from schema.py) so that later changes to the
schema module never alter what this step creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.String(64)
OBJ_ID = sa.String(128)
NAME = sa.String(255)
TS = sa.DateTime(timezone=True)  # modelvc reads/writes these as UTC


def upgrade() -> None:
    op.create_table(
        "repo_info",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_repo_info"),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("next_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
    )
    op.create_table(
        "versions",
        sa.Column("id", ID, nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("author", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("parents", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("lineage", sa.JSON(), nullable=False),
        sa.Column("raw_size", sa.BigInteger(), nullable=False),
        sa.Column("stored_size", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", TS, nullable=True),
        sa.Column("deleted_by", sa.Text(), nullable=True),
        sa.Column("delete_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_versions_model_id_models"),
        sa.PrimaryKeyConstraint("id", name="pk_versions"),
        sa.UniqueConstraint("model_id", "number", name="uq_versions_model_id_number"),
    )
    op.create_table(
        "refs",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("version_id", ID, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_refs_model_id_models"),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"], name="fk_refs_version_id_versions"
        ),
        sa.PrimaryKeyConstraint("model_id", "name", name="pk_refs"),
    )
    op.create_index("ix_refs_version_id", "refs", ["version_id"])
    op.create_table(
        "ref_moves",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("old", ID, nullable=True),
        sa.Column("new", ID, nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_ref_moves_model_id_models"),
        sa.PrimaryKeyConstraint("id", name="pk_ref_moves"),
    )
    op.create_index("ix_ref_moves_model_id_name_at", "ref_moves", ["model_id", "name", "at"])
    op.create_table(
        "objects",
        sa.Column("id", OBJ_ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("codec", sa.String(32), nullable=False),
        sa.Column("raw_size", sa.BigInteger(), nullable=False),
        sa.Column("stored_size", sa.BigInteger(), nullable=False),
        sa.Column("ref_id", OBJ_ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_objects"),
    )
    op.create_index("ix_objects_ref_id", "objects", ["ref_id"])
    op.create_table(
        "version_objects",
        sa.Column("version_id", ID, nullable=False),
        sa.Column("object_id", OBJ_ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["object_id"], ["objects.id"], name="fk_version_objects_object_id_objects"
        ),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"], name="fk_version_objects_version_id_versions"
        ),
        sa.PrimaryKeyConstraint("version_id", "object_id", name="pk_version_objects"),
    )
    op.create_index("ix_version_objects_object_id", "version_objects", ["object_id"])


def downgrade() -> None:
    op.drop_index("ix_version_objects_object_id", table_name="version_objects")
    op.drop_table("version_objects")
    op.drop_index("ix_objects_ref_id", table_name="objects")
    op.drop_table("objects")
    op.drop_index("ix_ref_moves_model_id_name_at", table_name="ref_moves")
    op.drop_table("ref_moves")
    op.drop_index("ix_refs_version_id", table_name="refs")
    op.drop_table("refs")
    op.drop_table("versions")
    op.drop_table("models")
    op.drop_table("repo_info")
