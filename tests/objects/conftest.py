"""One store fixture over every backend; s3 runs against a real SeaweedFS server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelvc.objects import LocalStore, MemoryStore, ObjectStore

try:
    from tests.services.s3 import S3Server, free_ports, start_seaweed
except ImportError:  # tests/ itself is on sys.path (no tests/__init__.py)
    from services.s3 import (  # type: ignore[no-redef, import-not-found]
        S3Server,
        free_ports,
        start_seaweed,
    )

__all__ = ["S3Server", "free_ports", "make_s3_store", "start_seaweed"]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS for the session; a start failure fails the tests, with the log."""
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    try:
        yield server
    finally:
        server.stop()


def make_s3_store(server: S3Server, **kwargs: object) -> ObjectStore:
    from modelvc.objects import S3Store

    return S3Store(
        server.bucket,
        prefix=f"t-{uuid.uuid4().hex[:12]}",  # a fresh, empty store per test
        endpoint_url=server.endpoint,
        region="us-east-1",
        access_key=server.access_key,
        secret_key=server.secret_key,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["local", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    kind = request.param
    if kind == "local":
        s: ObjectStore = LocalStore(tmp_path / "objects")
    elif kind == "memory":
        s = MemoryStore()
    else:
        s = make_s3_store(request.getfixturevalue("s3_server"))
    try:
        yield s
    finally:
        s.close()
