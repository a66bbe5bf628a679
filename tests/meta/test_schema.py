from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from modelvc.errors import AlreadyExists, RegistryNotFound, UnsupportedFormat
from modelvc.meta import migrate
from modelvc.meta.schema import metadata
from modelvc.meta.store import FORMAT_VERSION, MetaStore


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return str(request.getfixturevalue("pg_empty_db"))


def test_migration_head_is_the_schema_module(empty_url: str) -> None:
    MetaStore.create(empty_url).close()
    engine = sa.create_engine(empty_url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, metadata) == []
        assert migrate.current_revision(conn) == migrate.head_revision()
    engine.dispose()


def test_create_open_reopen(empty_url: str) -> None:
    with pytest.raises(RegistryNotFound):
        MetaStore.open(empty_url)
    store = MetaStore.create(empty_url)
    store.ensure_model("m")
    rid = store.registry_id
    store.close()
    with pytest.raises(AlreadyExists):
        MetaStore.create(empty_url)
    again = MetaStore.open(empty_url)
    assert (again.registry_id, again.format_version) == (rid, FORMAT_VERSION)
    assert [m.name for m in again.list_models()] == ["m"]
    again.close()


def test_newer_format_is_refused(empty_url: str) -> None:
    MetaStore.create(empty_url).close()
    engine = sa.create_engine(empty_url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE repo_info SET value = :v WHERE key = 'format_version'"),
            {"v": str(FORMAT_VERSION + 1)},
        )
    engine.dispose()
    with pytest.raises(UnsupportedFormat) as err:
        MetaStore.open(empty_url)
    text = str(err.value)
    assert str(FORMAT_VERSION + 1) in text and str(FORMAT_VERSION) in text
    assert "upgrade modelvc" in text


def test_unknown_revision_with_supported_format_opens(empty_url: str) -> None:
    """A newer modelvc that added a compatible migration (same format version)
    leaves a revision we do not know: open() uses the schema as it is."""
    MetaStore.create(empty_url).close()
    engine = sa.create_engine(empty_url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'base-test'"))
    engine.dispose()
    MetaStore.open(empty_url).close()
    with engine.connect() as conn:  # and did not try to migrate it
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == (
            "base-test"
        )
    engine.dispose()


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.db"
    with pytest.raises(RegistryNotFound):
        MetaStore.open(f"sqlite:///{path}")
    assert not path.exists()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    store = MetaStore.create(f"sqlite:///{tmp_path / 'p.db'}")
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    store.close()


def test_head_revision_constant_matches_alembic() -> None:
    from modelvc.meta import migrate

    assert migrate.head_revision() == migrate.alembic_head()


def test_a_0005_registry_is_upgraded_to_hold_uploads(empty_url: str) -> None:
    """A registry from before upload possession moved to the database (0005) opens,
    migrates to the head and takes upload rows; the downgrade removes the table."""
    from datetime import UTC, datetime, timedelta

    from alembic import command

    store = MetaStore.create(empty_url)
    store.ensure_model("m")
    store.close()
    engine = sa.create_engine(empty_url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        command.downgrade(migrate._config(conn), "0005")
    with engine.connect() as conn:
        assert migrate.current_revision(conn) == "0005"
        assert not sa.inspect(conn).has_table("uploads")
    store = MetaStore.open(empty_url)
    try:
        store.record_uploads("ann", ["ab" * 32])
        since = datetime.now(UTC) - timedelta(minutes=1)
        assert store.uploaded("ann", ["ab" * 32], since=since) == {"ab" * 32}
        assert [m.name for m in store.list_models()] == ["m"]
    finally:
        store.close()
    with engine.connect() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision() == "0007"
    engine.dispose()
