"""The Registry API on every backend: local, a server over SQLite, a server over
PostgreSQL, a server over PostgreSQL + S3 (SeaweedFS). Servers are real `modelvc
server` processes, shared per module; each test works on its own model name."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelvc.registry import Registry
from tests.server.proc import Server, grant_token

ACTOR = "tester"


@pytest.fixture(scope="module", params=["local", "remote", "remote-pg", "remote-pg-s3"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Any]:
    old = os.environ.get("MODELVC_AUTHOR")
    os.environ["MODELVC_AUTHOR"] = ACTOR  # local actor == the remote token's subject
    tmp = tmp_path_factory.mktemp(request.param)
    url = objects = None
    s3 = None
    if request.param.startswith("remote-pg"):
        if os.environ.get("MODELVC_SKIP_POSTGRES") == "1":
            pytest.skip("MODELVC_SKIP_POSTGRES=1")
        from tests.services.postgres import drop_database, fresh_database, postgres_url

        url = fresh_database(postgres_url())
    if request.param == "remote-pg-s3":  # the scale-out deployment: PostgreSQL + S3
        from tests.services.s3 import start_seaweed

        s3 = start_seaweed(tmp / "s3")
        objects = (f"s3://{s3.bucket}/conformance?endpoint={s3.endpoint}"
                   f"&access_key={s3.access_key}&secret_key={s3.secret_key}&region=us-east-1")
    reg = Registry.init(tmp / "repo", meta_url=url, objects_url=objects)
    if request.param == "local":
        yield reg
        reg.close()
    else:
        reg.close()
        token = grant_token(tmp / "repo", ACTOR, "admin", "*")
        server = Server(tmp / "repo", tmp / "server.log").start()
        remote = Registry.open(server.url, token=token)
        yield remote
        remote.close()
        assert server.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises it once drained
        assert '"msg": "stopped"' in server.log.read_text()
    if s3 is not None:
        s3.stop()
    if url is not None:
        drop_database(url)
    if old is None:
        os.environ.pop("MODELVC_AUTHOR", None)
    else:
        os.environ["MODELVC_AUTHOR"] = old


@pytest.fixture
def model() -> str:
    return "m-" + uuid.uuid4().hex[:8]


@pytest.fixture
def is_remote(api: Any) -> bool:
    from modelvc.remote import RemoteRegistry

    return isinstance(api, RemoteRegistry)


def files(tmp: Path) -> Path:
    d = tmp / "model"
    d.mkdir(parents=True, exist_ok=True)
    return d
