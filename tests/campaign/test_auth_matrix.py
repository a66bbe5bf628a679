"""The auth matrix over every route of the server, generated from its route table: a
route added later is probed too, and one whose path parameter has no probe value
fails the run (add it to PARAMS). Against a real `modelvc server` process.

- No token: 401 on every route but the public ones (health, the API schema).
- A valid token with no role: never a 2xx that mentions the model, its version id or
  an object id (a 2xx may only be about the caller: whoami, an empty list); never 5xx.
(tests/server/test_role_matrix.py covers every role x action through the client.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelvc.registry import Registry
from modelvc.server.app import create_app
from modelvc.server.state import ServerConfig
from tests.conftest import write_model
from tests.services.server import ServerProcess, grant_token

MODEL = "bert"
PUBLIC = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# Sub-applications mounted whole (their own auth and tests): tests/ui.
MOUNTS = {"/ui"}


def routes(app: Any) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route, through included routers."""
    def walk(items: Any, prefix: str) -> Iterator[tuple[str, str]]:
        for r in items:
            if type(r).__name__ == "_IncludedRouter":
                yield from walk(r.original_router.routes, prefix + r.include_context.prefix)
            elif type(r).__name__ == "Mount":
                if prefix + r.path not in MOUNTS:
                    raise AssertionError(f"unprobed mount {prefix + r.path}: add it to MOUNTS "
                                         "or probe it here")
            else:
                for m in sorted(getattr(r, "methods", None) or []):
                    if m != "HEAD":
                        yield m, prefix + r.path
    return walk(app.routes, "")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("matrix")
    path = tmp / "repo"
    with Registry.init(path) as reg:
        write_model(tmp / "model.safetensors", 0)
        v = reg.commit(tmp / "model.safetensors", model=MODEL, params={"lr": 0.1})
        reg.promote(f"{MODEL}@v1", "production", reason="first", create=True)
        oid = next(s.id for f in reg.manifest(f"{MODEL}@v1").files for s in f.segments)
        app = create_app(ServerConfig(registry=str(path)))
        table = sorted(set(routes(app)))
    server = ServerProcess(path, tmp / "server.log").start()
    try:
        yield {"server": server, "version": v.id, "object": oid, "routes": table,
               "nobody": grant_token(path, "nobody", None),
               "reader": grant_token(path, "rita", "reader", MODEL)}
    finally:
        server.stop()


def params(version: str, oid: str) -> dict[str, str]:
    return {"model": MODEL, "version_id": version, "object_id": oid, "oid": oid,
            "path": "model.safetensors", "name": "production", "channel": "production",
            "token_id": "0" * 16, "webhook_id": "1", "name_or_id": "k", "run_id": "1",
            "repo": MODEL, "org": "team", "rest": MODEL, "model_id": "m-0",
            "tag_key": "k"}


def _values(template: str, values: dict[str, str]) -> dict[str, str]:
    # `rest` is a repo id under /api/models/, a revision and file under .../resolve/
    return values | {"rest": "main/model.safetensors"} if "/resolve/" in template else values


def _url(template: str, values: dict[str, str]) -> str:
    def fill(m: re.Match[str]) -> str:
        name = m.group(1).split(":")[0]
        if name not in values:
            raise AssertionError(
                f"a new route {template} has a path parameter {name!r} the auth matrix has no "
                f"value for: add `{name!r}: ...` to params() in "
                "tests/campaign/test_auth_matrix.py (a value naming MODEL's data, so that a "
                "leak shows); query and body fields it needs go in _probe()")
        return values[name]
    return re.sub(r"\{([^}]+)\}", fill, template)


def _probe(c: httpx.Client, method: str, url: str, version: str) -> httpx.Response:
    query = {"ref": f"{MODEL}@v1", "a": f"{MODEL}@v1", "b": f"{MODEL}@v1", "model": MODEL,
             "size": "1", "offset": "0", "name": "production", "subject": "nobody",
             "scope": MODEL, "when": datetime.now(UTC).isoformat()}
    body = {"model": MODEL, "ids": [version], "id": version, "ref": f"{MODEL}@v1",
            "name": "x", "subject": "nobody", "scope": MODEL, "role": "admin",
            "files": [], "url": "http://127.0.0.1:9/", "kind": "branch",
            "version_id": version}
    kw: dict[str, Any] = {"params": query}
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        kw["json"] = body
    return c.request(method, url, **kw)


def test_the_route_table_is_probed(world: dict[str, Any]) -> None:
    assert len(world["routes"]) > 60  # the table was read, not an empty walk
    for _, template in world["routes"]:
        _url(template, params("v", "o"))


def test_no_token_is_refused_everywhere_but_public_routes(world: dict[str, Any]) -> None:
    values = params(world["version"], world["object"])
    wrong = []
    with httpx.Client(base_url=world["server"].url, timeout=60) as c:
        for method, template in world["routes"]:
            r = _probe(c, method, _url(template, _values(template, values)), world["version"])
            expected = 200 if template in PUBLIC else 401
            if r.status_code != expected:
                wrong.append(f"{method} {template}: {r.status_code} {r.text[:120]}")
    assert not wrong, ("routes that did not answer 401 without a token (authenticate them: "
                       "the P dependency of server/deps.py; or, if public on purpose, add "
                       "them to PUBLIC in tests/campaign/test_auth_matrix.py):\n"
                       + "\n".join(wrong))


def test_a_token_without_roles_learns_nothing(world: dict[str, Any]) -> None:
    values = params(world["version"], world["object"])
    secrets_ = (MODEL, world["version"], world["object"][:16])
    wrong = []
    headers = {"Authorization": f"Bearer {world['nobody']}"}
    with httpx.Client(base_url=world["server"].url, timeout=60, headers=headers) as c:
        for method, template in world["routes"]:
            if template in PUBLIC:
                continue
            r = _probe(c, method, _url(template, _values(template, values)), world["version"])
            leaked = r.is_success and any(s in r.text for s in secrets_)
            if leaked or r.status_code >= 500:
                wrong.append(f"{method} {template}: {r.status_code} {r.text[:160]}")
    assert not wrong, ("routes that answered a token with no role with the model's data "
                       "(authorize them: authorize(p, ROLE, model) before reading) or with a "
                       "5xx (a probe the route cannot take: fix the route, or give _probe() "
                       "the field it needs):\n" + "\n".join(wrong))


# Reads that take a POST body (searches, transfer negotiation, fetches) and checks that
# store nothing: a reader may call them; none changes the registry (checked below).
_POST_READS = [
    "/api/validate-yaml", "/api/models/{repo}/paths-info/{name}",
    "/api/v1/models/{model}/signatures/check", "/api/v1/objects/fetch",
    "/api/v1/objects/have", "/api/v1/transfer/ancestry", "/api/v1/transfer/closure",
    "/api/v1/transfer/have-versions",
    *(f"/{api}/2.0/mlflow/{what}/search" for api in ("api", "ajax-api")
      for what in ("experiments", "logged-models", "model-versions", "registered-models",
                   "runs")),
]
READER_MAY = {("POST", t) for t in _POST_READS}


def test_a_reader_changes_nothing(world: dict[str, Any]) -> None:
    """A reader of the model, on every route that is not a GET: no 2xx (the registry
    is also unchanged afterwards, the next test) and no 5xx."""
    values = params(world["version"], world["object"])
    wrong = []
    headers = {"Authorization": f"Bearer {world['reader']}"}
    with httpx.Client(base_url=world["server"].url, timeout=60, headers=headers) as c:
        for method, template in world["routes"]:
            if method in ("GET", "HEAD") or template in PUBLIC or (method, template) in READER_MAY:
                continue
            r = _probe(c, method, _url(template, _values(template, values)), world["version"])
            if r.is_success or r.status_code >= 500:
                wrong.append(f"{method} {template}: {r.status_code} {r.text[:160]}")
    assert not wrong, ("routes where a reader's change was accepted (authorize them: "
                       "authorize(p, 'writer' or higher, model)) or answered 5xx:\n"
                       + "\n".join(wrong))


def test_the_registry_is_unchanged_by_the_probes(world: dict[str, Any], tmp_path: Path
                                                 ) -> None:
    with Registry.open(world["server"].registry) as reg:
        assert [v.number for v in reg.versions(MODEL)] == [1]
        assert reg.resolve(f"{MODEL}@production").id == world["version"]
        assert {r.name for r in reg.refs(MODEL)} == {"main", "production"}
        assert reg.verify_audit() == []
