"""Fixtures for the fault tests: registries on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelvc.registry import Registry


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """An empty registry folder; its metadata on SQLite or on a fresh PostgreSQL database."""
    path = tmp_path / "reg"
    if request.param == "sqlite":
        Registry.init(path).close()
    else:
        Registry.init(path, meta_url=request.getfixturevalue("pg_url")).close()
    return path
