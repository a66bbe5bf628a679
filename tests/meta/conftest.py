"""The `meta` fixture: a fresh MetaStore per test on SQLite and on PostgreSQL.

PostgreSQL: one database per session, emptied (TRUNCATE) before each test, which
is much faster than a database per test. If PostgreSQL cannot be started the
postgres tests FAIL with the reason, unless MODELVC_SKIP_POSTGRES=1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from meta_helpers import Backend

from modelvc.meta.store import MetaStore

try:
    from tests.services.postgres import drop_database, fresh_database, postgres_url
except ImportError:  # tests/ itself is on sys.path (no tests/__init__.py)
    from services.postgres import (  # type: ignore[no-redef]
        drop_database,
        fresh_database,
        postgres_url,
    )

BACKENDS = ["sqlite", "postgres"]
DATA_TABLES = ("version_objects, ref_moves, refs, versions, objects, models, uploads, tokens, "
               "role_bindings")


def pg_base_url() -> str:
    """The server URL, or fail/skip the calling test as the environment asks."""
    if os.environ.get("MODELVC_SKIP_POSTGRES") == "1":
        pytest.skip("MODELVC_SKIP_POSTGRES=1")
    try:
        return postgres_url()
    except Exception as err:
        pytest.fail(f"PostgreSQL is not available: {err}", pytrace=False)


def pg_fresh_database() -> str:
    try:
        return fresh_database(pg_base_url())
    except Exception as err:  # e.g. MODELVC_TEST_PG_URL names a server that is down
        pytest.fail(f"PostgreSQL is not available: {err}", pytrace=False)


@pytest.fixture
def pg_empty_db() -> Iterator[str]:
    """A brand-new empty PostgreSQL database (for create/open tests)."""
    url = pg_fresh_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
def _pg_registry() -> Iterator[str]:
    url = pg_fresh_database()
    MetaStore.create(url).close()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Where a fresh, empty registry lives for this test."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'meta.db'}"
        MetaStore.create(url).close()
        return Backend("sqlite", url)
    pg_base_url()  # fail or skip before asking for the session database
    url = request.getfixturevalue("_pg_registry")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {DATA_TABLES} RESTART IDENTITY CASCADE")
    engine.dispose()
    return Backend("postgres", url)


@pytest.fixture
def meta(backend: Backend) -> Iterator[MetaStore]:
    store = MetaStore.open(backend.url)
    try:
        yield store
    finally:
        store.close()
