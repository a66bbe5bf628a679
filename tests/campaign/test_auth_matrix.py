"""The auth matrix over every route of the server, generated from its route table: a
route added later is probed too, and one whose path parameter has no probe value
fails the run (add it to PARAMS). Against a real `modelvc server` process.

- No token: 401 on every route but the public ones (health, the API schema).
- A valid token with no role: never a 2xx that mentions the model, its version id or
  an object id (a 2xx may only be about the caller: whoami, an empty list); never 5xx.
- Every route declares the least role it needs (route_roles.py; an undeclared route
  fails the run). Each weaker principal (no role, reader, writer, promoter, admin of the
  model, admin of '*') is refused: no 2xx, no 5xx, and, where it may not read what is
  named, the same status as for a thing that does not exist. On a registry of its own,
  the declared role itself is not refused (the declaration is the least, not more).
- Afterwards the registry is unchanged and its audit chain verifies.
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

from .route_roles import LEAST, LEVELS

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


ORG_MODEL = "team--bert"  # /api/models/{org}/{repo}/... with org "team"
# the principals, weakest first (route_roles.LEVELS): role on MODEL and ORG_MODEL
PRINCIPALS = (("nobody", None), ("rita", "reader"), ("wes", "writer"), ("pam", "promoter"),
              ("ada", "admin"), ("root", "admin*"))


def _grant(path: Path, subject: str, role: str | None) -> str:
    if role == "admin*":
        return grant_token(path, subject, "admin", "*")
    token = grant_token(path, subject, role, MODEL)
    if role is not None:
        with Registry.open(path) as reg:
            reg.roles.grant(subject, role, on=ORG_MODEL, actor="bootstrap")
    return token


def make_world(tmp: Path) -> dict[str, Any]:
    """A registry with MODEL and ORG_MODEL (a version, a channel), a deployment, a
    webhook, a spare token, an MLflow experiment, run and logged model (created by the
    writer, who owns them), and a token per principal; a server on it, started."""
    path = tmp / "repo"
    with Registry.init(path) as reg:
        write_model(tmp / "model.safetensors", 0)
        for name in (ORG_MODEL, MODEL):
            v = reg.commit(tmp / "model.safetensors", model=name, params={"lr": 0.1})
            reg.promote(f"{name}@v1", "production", reason="first", create=True)
        oid = next(s.id for f in reg.manifest(f"{MODEL}@v1").files for s in f.segments)
        table = sorted(set(routes(create_app(ServerConfig(registry=str(path))))))
    tokens = {subject: _grant(path, subject, role) for subject, role in PRINCIPALS}
    spare = grant_token(path, "spare", None)
    server = ServerProcess(path, tmp / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=120, verify=False) as c:
            def call(who: str, method: str, url: str, **kw: Any) -> Any:
                r = c.request(method, url, headers={"Authorization": f"Bearer {tokens[who]}"},
                              **kw)
                assert r.is_success, (url, r.status_code, r.text)
                return r.json()
            ids = {t["name"]: t["id"] for t in call("root", "GET", "/api/v1/tokens")}
            hook = call("root", "POST", "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/"})
            call("root", "POST", "/api/v1/deployments", json={"name": "production",
                                                                 "model": MODEL})
            ml = "/api/2.0/mlflow"
            exp = call("wes", "POST", f"{ml}/experiments/create", json={"name": "exp"})
            run = call("wes", "POST", f"{ml}/runs/create", json=exp)["run"]["info"]["run_id"]
            lm = call("wes", "POST", f"{ml}/logged-models", json=exp)["model"]["info"]
    except BaseException:
        server.stop()
        raise
    return {"server": server, "version": v.id, "object": oid, "routes": table,
            "tokens": tokens, "nobody": tokens["nobody"], "reader": tokens["rita"],
            "values": {"model": MODEL, "version_id": v.id, "object_id": oid,
                       "token_id": ids["spare-test"], "webhook_id": str(hook["webhook"]["id"]),
                       "run_id": run, "experiment_id": exp["experiment_id"],
                       "model_id": lm["model_id"], "deployment": "production"},
            "spare": spare}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    w = make_world(tmp_path_factory.mktemp("matrix"))
    try:
        yield w
    finally:
        w["server"].stop()


# What the probes name when the thing must not exist (refusals must read the same).
ABSENT = {"model": "ghost", "version_id": "e" * 64, "object_id": "e" * 64,
          "token_id": "e" * 16, "webhook_id": "999999", "run_id": "e" * 32,
          "experiment_id": "999999", "model_id": "m-" + "e" * 32, "deployment": "ghost"}


def params(version: str, oid: str, w: dict[str, str] | None = None) -> dict[str, str]:
    w = w or {"model": MODEL, "version_id": version, "object_id": oid, "token_id": "0" * 16,
              "webhook_id": "1", "run_id": "1", "model_id": "m-0", "deployment": "production"}
    model = w["model"]
    return {"model": model, "version_id": w["version_id"], "object_id": w["object_id"],
            "oid": w["object_id"], "path": "model.safetensors", "name": "production",
            "channel": "production", "token_id": w["token_id"],
            "webhook_id": w["webhook_id"], "name_or_id": "k", "run_id": w["run_id"],
            "repo": model, "org": "team" if model == MODEL else "nobodys", "rest": model,
            "model_id": w["model_id"], "tag_key": "k",
            "deployment": w.get("deployment", "production")}


def _values(template: str, values: dict[str, str]) -> dict[str, str]:
    # `rest` is a repo id under /api/models/, a revision and file under .../resolve/
    out = values | {"rest": "main/model.safetensors"} if "/resolve/" in template else values
    if template.startswith("/api/v1/deployments/"):
        out = out | {"name": values.get("deployment", "production")}
    return out


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


def _probe(c: httpx.Client, method: str, url: str, version: str,
           w: dict[str, str] | None = None, body: bytes | None = None) -> httpx.Response:
    """The route called with what it needs (BODY: these bytes as its JSON instead)."""
    w = w or {"model": MODEL, "run_id": "1", "experiment_id": "0", "model_id": "m-0"}
    model = w["model"]
    query = {"ref": f"{model}@v1", "a": f"{model}@v1", "b": f"{model}@v1", "model": model,
             "size": "1", "offset": "0", "name": "production", "subject": "nobody",
             "scope": model, "when": datetime.now(UTC).isoformat()}
    fields = {"model": model, "ids": [version], "id": version, "ref": f"{model}@v1",
            "name": model, "subject": "nobody", "scope": model, "role": "admin",
            "files": [], "url": "http://127.0.0.1:9/", "kind": "branch",
            "version_id": version}
    if "/mlflow" in url:  # MLflow names the registered model `name`, its version `version`
        ml = {"name": model, "version": "1", "alias": "production", "key": "k",
              "value": "v", "run_id": w["run_id"], "experiment_id": w["experiment_id"],
              "model_id": w["model_id"], "experiment_name": "exp", "path": "a",
              "stage": "Production", "new_name": model}
        query |= ml
        fields |= ml
    kw: dict[str, Any] = {"params": query}
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        kw["json"] = fields
    if body is not None:
        kw = kw | {"content": body, "headers": {"content-type": "application/json"}}
        kw.pop("json", None)
    return c.request(method, url, **kw)


def test_the_route_table_is_probed(world: dict[str, Any]) -> None:
    assert len(world["routes"]) > 60  # the table was read, not an empty walk
    for _, template in world["routes"]:
        _url(template, params("v", "o"))


def test_no_token_is_refused_everywhere_but_public_routes(world: dict[str, Any]) -> None:
    values = params(world["version"], world["object"], world["values"])
    wrong = []
    with httpx.Client(base_url=world["server"].url, timeout=60, verify=False) as c:
        for method, template in world["routes"]:
            r = _probe(c, method, _url(template, _values(template, values)), world["version"],
                       world["values"])
            expected = 200 if template in PUBLIC else 401
            if r.status_code != expected:
                wrong.append(f"{method} {template}: {r.status_code} {r.text[:120]}")
    assert not wrong, ("routes that did not answer 401 without a token (authenticate them: "
                       "the P dependency of server/deps.py; or, if public on purpose, add "
                       "them to PUBLIC in tests/campaign/test_auth_matrix.py):\n"
                       + "\n".join(wrong))


def test_a_token_without_roles_learns_nothing(world: dict[str, Any]) -> None:
    values = params(world["version"], world["object"], world["values"])
    secrets_ = (MODEL, world["version"], world["object"][:16])
    wrong = []
    headers = {"Authorization": f"Bearer {world['nobody']}"}
    with httpx.Client(base_url=world["server"].url, timeout=60, verify=False,
                      headers=headers) as c:
        for method, template in world["routes"]:
            if template in PUBLIC:
                continue
            r = _probe(c, method, _url(template, _values(template, values)), world["version"],
                       world["values"])
            leaked = r.is_success and any(s in r.text for s in secrets_)
            if leaked or r.status_code >= 500:
                wrong.append(f"{method} {template}: {r.status_code} {r.text[:160]}")
    assert not wrong, ("routes that answered a token with no role with the model's data "
                       "(authorize them: authorize(p, ROLE, model) before reading) or with a "
                       "5xx (a probe the route cannot take: fix the route, or give _probe() "
                       "the field it needs):\n" + "\n".join(wrong))


def test_the_registry_is_unchanged_by_the_probes(world: dict[str, Any], tmp_path: Path
                                                 ) -> None:
    with Registry.open(world["server"].registry) as reg:
        assert [v.number for v in reg.versions(MODEL)] == [1]
        assert reg.resolve(f"{MODEL}@production").id == world["version"]
        assert {r.name for r in reg.refs(MODEL)} == {"main", "production"}
        assert reg.verify_audit() == []


def _answer(r: httpx.Response) -> str:
    return f"{r.status_code} {r.text[:160]}"


def test_every_route_declares_its_least_role(world: dict[str, Any]) -> None:
    table = {(m, t) for m, t in world["routes"] if t not in PUBLIC}
    missing = sorted(table - set(LEAST))
    assert not missing, ("routes without a declared least role: add each to LEAST in "
                         "tests/campaign/route_roles.py:\n"
                         + "\n".join(f"{m} {t}" for m, t in missing))
    assert not set(LEAST) - table, f"LEAST lists routes that are gone: {set(LEAST) - table}"
    assert set(LEAST.values()) <= set(LEVELS)


def _weaker(world: dict[str, Any]
            ) -> Iterator[tuple[int, str | None, httpx.Client, str, str, str]]:
    """(rank, role, the principal's client, method, template, least role) for each
    principal weaker than each route's declared least role."""
    for rank, (subject, role) in enumerate(PRINCIPALS):
        headers = {"Authorization": f"Bearer {world['tokens'][subject]}"}
        with httpx.Client(base_url=world["server"].url, timeout=120, verify=False,
                          headers=headers) as c:
            for (method, template), least in sorted(LEAST.items()):
                if rank < LEVELS.index(least):
                    yield rank, role, c, method, template, least


def test_every_weaker_principal_is_refused_and_learns_nothing(world: dict[str, Any]) -> None:
    """Each principal weaker than a route's declared role: no 2xx, no 5xx; and one that
    may not read what the probe names (no role on the model; or a route of the whole
    registry) gets the same status as for a model (object, run, deployment, token,
    webhook...) that does not exist."""
    real = world["values"]
    absent = real | ABSENT
    wrong = []
    probes = 0
    for rank, role, c, method, template, least in _weaker(world):
        probes += 1
        r = _probe(c, method, _url(template, _values(template, params("", "", real))),
                   real["version_id"], real)
        if r.is_success or r.status_code >= 500:
            wrong.append(f"{role or 'no role'} {method} {template}: {_answer(r)}")
            continue
        if rank > 0 and least != "admin*":
            continue  # it may read the model: it may know what exists there
        q = _probe(c, method, _url(template, _values(template, params("", "", absent))),
                   absent["version_id"], absent)
        if q.status_code != r.status_code:
            wrong.append(f"{role or 'no role'} {method} {template}: {_answer(r)}; "
                         f"when absent {_answer(q)}")
    assert probes > 300
    assert not wrong, ("a principal weaker than the route's declared least role "
                       "(tests/campaign/route_roles.py) was served (authorize the route), "
                       "answered 5xx, or answered differently when the thing probed "
                       "does not exist (answer an unreadable thing as an absent one):\n"
                       + "\n".join(wrong))


# Routes whose declared least role (route_roles.py) holds for the probes' body only: they
# check a weaker role before the body and the one the named model needs after it, so a
# principal between the two may be told about a malformed body. The role checked first:
BEFORE_BODY = {
    # a missing repo is RepoNotFound to whoever may read its name (huggingface_hub's
    # delete_repo(missing_ok=True) passes); an existing one is refused even to its admin
    ("DELETE", "/api/repos/delete"): "reader",
    # MLflow: a writer deletes a registered model without versions, one with needs admin
    **{("DELETE", f"{prefix}/registered-models/delete"): "writer"
       for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")},
}


def test_a_refused_caller_with_a_malformed_body_is_refused_the_same(world: dict[str, Any]
                                                                      ) -> None:
    """Authorization comes before the body is parsed: each principal weaker than a
    route's declared role gets, for a body of the wrong shape and for one that is not
    JSON, the answer it gets for a good body (401/403/404), not a 400/422 telling it
    what the body should hold (server/deps.py: least; the MLflow routes: mlflow.api())."""
    real = world["values"]
    wrong = []
    probes = 0
    for rank, role, c, method, template, _ in _weaker(world):
        first = BEFORE_BODY.get((method, template))
        if (first and rank >= LEVELS.index(first)) or \
                method not in ("POST", "PUT", "PATCH", "DELETE"):
            continue
        url = _url(template, _values(template, params("", "", real)))
        r = _probe(c, method, url, real["version_id"], real)
        for body in (b"[1]", b"{"):
            probes += 1
            q = _probe(c, method, url, real["version_id"], real, body=body)
            if q.status_code != r.status_code or q.status_code not in (401, 403, 404):
                wrong.append(f"{role or 'no role'} {method} {template} {body!r}: "
                             f"{_answer(q)}; with a good body {_answer(r)}")
    assert probes > 500  # the MLflow and Hugging Face routes too
    assert not wrong, ("a caller the route refuses was answered differently for a malformed "
                       "body (declare the route's least role before its body: "
                       "`dependencies=[least(ROLE)]`, server/deps.py; MLflow: the role "
                       "of `@api(...)`, server/mlflow.py):\n" + "\n".join(wrong))


def test_the_declared_role_is_enough(tmp_path: Path) -> None:
    """On a registry of its own (the probes change it): the declared role is not refused
    (401/403), so a declaration is not stronger than what the route needs."""
    w = make_world(tmp_path)
    real = w["values"]
    wrong = []
    try:
        for (method, template), least in sorted(LEAST.items()):
            subject = PRINCIPALS[LEVELS.index(least)][0]
            headers = {"Authorization": f"Bearer {w['tokens'][subject]}"}
            with httpx.Client(base_url=w["server"].url, timeout=120, verify=False,
                              headers=headers) as c:
                r = _probe(c, method, _url(template, _values(template, params("", "", real))),
                           real["version_id"], real)
            # a 403 that is not about roles (a route's own rule, e.g. repos/delete refusing
            # a model with history) is not a refusal of the role
            if r.status_code == 401 or (r.status_code == 403 and any(
                    s in r.text for s in ("needs the", "is limited to", "may not change"))):
                wrong.append(f"{least} {method} {template}: {_answer(r)}")
    finally:
        w["server"].stop()
    assert not wrong, ("routes that refused their declared least role: lower the role in "
                       "tests/campaign/route_roles.py if the route is right, or fix the "
                       "route:\n" + "\n".join(wrong))
