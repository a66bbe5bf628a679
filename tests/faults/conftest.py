"""Fixtures for the fault tests: registries on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture(scope="module", autouse=True)
def _zygote_per_module() -> Iterator[None]:
    """The children's zygote (tests/faults/zygote.py) stops with each module, so their
    CPU is counted with the module that used them."""
    yield
    from .zygote import stop

    stop()
