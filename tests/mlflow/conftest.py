"""A real `modelvc server` (embedded SQLite, or PostgreSQL + S3) and the environment the
real MLflow client reads (MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN) pointed at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelvc.registry import Registry
from tests.services.server import ServerProcess, grant_token

# No retries: a refusal is the answer, and a broken call fails the test at once.
CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "120",
              "MLFLOW_ENABLE_ASYNC_LOGGING": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
              "DO_NOT_TRACK": "true", "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"}


@dataclass
class Server:
    url: str
    registry: Path
    writer: str  # alice: writer on every model, promoter on every model
    reader: str  # carol: reader on every model
    admin: str  # root: admin on *
    proc: ServerProcess

    def open(self) -> Registry:
        return Registry.open_local(self.registry)


@contextmanager
def running(registry: Path, log: Path) -> Iterator[Server]:
    """A server on the registry at REGISTRY, with the three users' tokens; stopped after."""
    admin = grant_token(registry, "root", "admin")
    writer = grant_token(registry, "alice", "promoter")
    reader = grant_token(registry, "carol", "reader")
    proc = ServerProcess(registry, log, args=["--log-level", "warning"]).start()
    try:
        yield Server(proc.url, registry, writer, reader, admin, proc)
    finally:
        proc.stop()


def client_env(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """The MLflow client's environment: SERVER, alice's token."""
    for k, v in CLIENT_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.writer)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("mlflow-server")
    Registry.init(root / "registry").close()
    with running(root / "registry", root / "server.log") as s:
        yield s


@pytest.fixture
def as_user(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    return client_env(server, monkeypatch)


def client(server: Server, token: str | None = None) -> object:
    import mlflow

    os.environ["MLFLOW_TRACKING_TOKEN"] = token or server.writer
    return mlflow.MlflowClient(tracking_uri=server.url, registry_uri=server.url)


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same server on PostgreSQL metadata and SeaweedFS S3 objects."""
    import uuid

    if os.environ.get("MODELVC_SKIP_POSTGRES") == "1":
        pytest.skip("MODELVC_SKIP_POSTGRES=1")
    from tests.services.postgres import drop_database, fresh_database, postgres_url
    from tests.services.s3 import seaweed_s3

    root = tmp_path_factory.mktemp("mlflow-scaled")
    pg = fresh_database(postgres_url())
    try:
        with seaweed_s3(root / "weed") as s3:
            objects = (f"s3://{s3.bucket}/{uuid.uuid4().hex[:8]}?endpoint={s3.endpoint}"
                       f"&access_key={s3.access_key}&secret_key={s3.secret_key}"
                       "&region=us-east-1")
            Registry.init(root / "registry", meta_url=pg, objects_url=objects).close()
            with running(root / "registry", root / "server.log") as s:
                yield s
    finally:
        drop_database(pg)


@pytest.fixture
def scaled_user(scaled: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    return client_env(scaled, monkeypatch)
