"""Scale-out fixtures: a real PostgreSQL and a real SeaweedFS S3, two server processes
sharing them (each with its own registry folder holding the same config.json, as two
machines would)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelvc.registry import Registry
from tests.services.postgres import drop_database, fresh_database, postgres_url
from tests.services.s3 import S3Server, seaweed_s3
from tests.services.server import ServerProcess, grant_token


@pytest.fixture(autouse=True)
def _author(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    monkeypatch.delenv("MODELVC_TOKEN", raising=False)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweed_s3(tmp_path_factory.mktemp("weed")) as server:
        yield server


@pytest.fixture
def pg() -> Iterator[str]:
    if os.environ.get("MODELVC_SKIP_POSTGRES") == "1":
        pytest.skip("MODELVC_SKIP_POSTGRES=1")
    url = fresh_database(postgres_url())
    yield url
    drop_database(url)


@dataclass
class Cluster:
    folders: tuple[Path, Path]
    servers: tuple[ServerProcess, ServerProcess]
    token: str

    def open(self, i: int = 0) -> Registry:
        return Registry.open(self.folders[i])


def s3_url(s3: S3Server) -> str:
    return (f"s3://{s3.bucket}/{uuid.uuid4().hex[:8]}?endpoint={s3.endpoint}"
            f"&access_key={s3.access_key}&secret_key={s3.secret_key}&region=us-east-1")


@pytest.fixture
def cluster(tmp_path: Path, pg: str, s3: S3Server, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[Cluster]:
    a, b = tmp_path / "node-a", tmp_path / "node-b"
    Registry.init(a, meta_url=pg, objects_url=s3_url(s3)).close()
    (b / ".modelvc").mkdir(parents=True)
    shutil.copy(a / ".modelvc" / "config.json", b / ".modelvc" / "config.json")
    token = grant_token(a)
    monkeypatch.setenv("MODELVC_TOKEN", token)
    servers = (ServerProcess(a, tmp_path / "a.log").start(),
               ServerProcess(b, tmp_path / "b.log").start())
    yield Cluster((a, b), servers, token)
    for s in servers:
        s.stop()
