"""Fixtures for the fault tests: registries on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelvc.registry import Registry

try:
    from tests.services.postgres import drop_database, fresh_database, postgres_url
except ImportError:  # tests/ itself is on sys.path (no tests/__init__.py)
    from services.postgres import (  # type: ignore[no-redef]
        drop_database,
        fresh_database,
        postgres_url,
    )


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped afterwards). Fails the test if the
    server cannot be started, unless MODELVC_SKIP_POSTGRES=1 (then it skips)."""
    if os.environ.get("MODELVC_SKIP_POSTGRES") == "1":
        pytest.skip("MODELVC_SKIP_POSTGRES=1")
    try:
        base = postgres_url()
    except Exception as err:
        pytest.fail(f"PostgreSQL is not available: {err}", pytrace=False)
    url = fresh_database(base)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """An empty registry folder; its metadata on SQLite or on a fresh PostgreSQL database."""
    path = tmp_path / "reg"
    if request.param == "sqlite":
        Registry.init(path).close()
    else:
        Registry.init(path, meta_url=request.getfixturevalue("pg_url")).close()
    return path
