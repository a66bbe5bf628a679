"""Run the packaged Alembic migrations on an open connection (no alembic.ini)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from .api import HEAD_REVISION

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = str(Path(__file__).with_name("migrations"))
# The newest revision in migrations/versions (a test pins it to Alembic's head). Kept
# as a constant so opening a registry never imports Alembic (~80 ms of CLI start-up);
# defined in api.py so meta/lite.py reads it without SQLAlchemy.
__all__ = ["HEAD_REVISION", "alembic_head", "current_revision", "head_revision",
           "known_revisions", "upgrade"]


def _config(conn: sa.Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    return HEAD_REVISION


def alembic_head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the migrations folder has no revisions"
    return head


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}


def current_revision(conn: sa.Connection) -> str | None:
    """The stamped revision, read with plain SQL (no Alembic import)."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


def upgrade(conn: sa.Connection, target: str = "head") -> None:
    """Upgrade inside the caller's transaction (env.py joins it)."""
    from alembic import command

    command.upgrade(_config(conn), target)
