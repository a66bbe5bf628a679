"""The Registry API on every backend: local, a server over SQLite, a server over
PostgreSQL, a server over PostgreSQL + S3 (SeaweedFS). Servers are real `modelvc
server` processes, shared per module; each test works on its own model name.

Every test declares the RegistryAPI verbs it covers (`@pytest.mark.verbs(...)`); the
`api` it gets records the verbs called through it, and the test fails if it did not
call one it declares. test_coverage.py fails when a verb of the Protocol is declared by
no test."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelvc.api import AREAS, verbs
from modelvc.registry import Registry
from tests.services.server import ServerProcess, grant_token

ACTOR = "tester"
VERBS = set(verbs())



TOKENS: dict[int, str | None] = {}  # id(backend) -> the token it was opened with


@pytest.fixture(scope="module", params=["local", "remote", "remote-pg", "remote-pg-s3"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
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
        TOKENS[id(reg)] = None
        yield reg
        reg.close()
    else:
        reg.close()
        token = grant_token(tmp / "repo", ACTOR, "admin", "*")
        server = ServerProcess(tmp / "repo", tmp / "server.log").start()
        remote = Registry.open(server.url, token=token)
        TOKENS[id(remote)] = token
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


class Recording:
    """Forwards everything to a registry, noting each RegistryAPI verb called."""

    def __init__(self, target: Any, calls: set[str], prefix: str = "") -> None:
        self._target, self._calls, self._prefix = target, calls, prefix

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        dotted = self._prefix + name
        if not self._prefix and name in AREAS:
            return Recording(attr, self._calls, name + ".")
        if dotted in VERBS and callable(attr):
            def call(*args: Any, **kw: Any) -> Any:
                self._calls.add(dotted)
                return attr(*args, **kw)

            return call
        return attr

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def calls() -> set[str]:
    return set()


@pytest.fixture
def api(backend: Any, calls: set[str], request: pytest.FixtureRequest) -> Iterator[Any]:
    yield Recording(backend, calls)
    marker = request.node.get_closest_marker("verbs")
    declared = set(marker.args) if marker else set()
    missing = declared - calls
    assert not missing, f"declares verbs it never called: {sorted(missing)}"


@pytest.fixture
def reopen(backend: Any, calls: set[str]) -> Callable[[], Any]:
    """Open the same registry again (by its location), recorded like `api`."""
    return lambda: Recording(Registry.open(backend.location, token=TOKENS[id(backend)]),
                             calls)


@pytest.fixture
def is_remote(backend: Any) -> bool:
    from modelvc.remote import RemoteRegistry

    return isinstance(backend, RemoteRegistry)


def files(tmp: Path) -> Path:
    d = tmp / "model"
    d.mkdir(parents=True, exist_ok=True)
    return d
