"""Hostile input against a real `modelvc server` process (issue 12): cross-model reads
through references, bodies before authentication, per-route body caps, bodies that
never finish, and inputs that once answered 500 or dropped the connection.

Raw sockets where the point is what the server does before the body has arrived (an
HTTP client would send it all first)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import blake3
import httpx
import pytest

from modelvc.registry import Registry
from modelvc.transfer.local import local_end
from modelvc.transfer.protocol import RefInfo
from tests.conftest import write_model
from tests.services.rawhttp import raw_request, read_answer
from tests.services.server import ServerProcess, grant_token

SECRET, PUBLIC = "secret-model", "public-model"
BODY_TIMEOUT = 3  # the server's body_timeout for this module (seconds)


@dataclass
class Env:
    server: ServerProcess
    admin: str
    writer: str  # writer on PUBLIC only
    secret_v1: str

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=60,
                            verify=False)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("hostile")
    path = tmp / "repo"
    with Registry.init(path) as reg:
        write_model(tmp / "s.safetensors", 0)
        secret = reg.commit(tmp / "s.safetensors", model=SECRET, params={"lr": "s3cret"},
                            message="the secret run")
        write_model(tmp / "p.safetensors", 1)
        pub = reg.commit(tmp / "p.safetensors", model=PUBLIC)
        # A version of PUBLIC whose manifest names SECRET's version as its parent, pushed
        # (by someone who may read both): log over HTTP must not show that parent to a
        # reader of PUBLIC only.
        fork = dataclasses.replace(reg.manifest(f"{PUBLIC}@v1"), parents=(secret.id,),
                                   message="fork")
        reg._io.put_blob(fork.to_bytes(), oid=fork.id)
        end = local_end(reg)
        end.record_version(PUBLIC, fork.id)
        end.update_ref(RefInfo(PUBLIC, "fork", "branch", fork.id), expected=None,
                       force=False)
        assert pub.id != fork.id
    server = ServerProcess(path, tmp / "server.log", env={
        "MODELVC_SERVER_MAX_BODY_MB": "1", "MODELVC_SERVER_MAX_COMMIT_MB": "4",
        "MODELVC_SERVER_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "MODELVC_SERVER_HEADER_TIMEOUT": str(BODY_TIMEOUT)}).start()
    try:
        yield Env(server, grant_token(path, "root", "admin", "*"),
                  grant_token(path, "pub-writer", "writer", PUBLIC), secret.id)
    finally:
        server.stop()


def _upload_blob(c: httpx.Client, data: bytes) -> dict[str, Any]:
    oid = blake3.blake3(data).hexdigest()
    r = c.put(f"/api/v1/models/{PUBLIC}/uploads/{oid}", params={"kind": "blob"},
              content=data)
    assert r.status_code == 200, r.text
    return {"path": "notes.txt", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "format": "other", "segments": [{"id": oid, "n": len(data)}]}


# ---- 1. cross-model reads
def test_commit_with_a_parent_in_an_unreadable_model_is_refused(env: Env) -> None:
    with env.client(env.writer) as c:
        entry = _upload_blob(c, b"a writer's notes")
        r = c.post(f"/api/v1/models/{PUBLIC}/commits",
                   json={"files": [entry], "branch": "graft", "parent": f"{SECRET}@v1"})
        assert r.status_code == 403, r.text
        # The same answer as for a model that does not exist: no oracle.
        r2 = c.post(f"/api/v1/models/{PUBLIC}/commits",
                    json={"files": [entry], "branch": "graft", "parent": "no-such-model@v1"})
        assert r2.status_code == 403
        assert r.json()["message"].replace(SECRET, "X") == \
            r2.json()["message"].replace("no-such-model", "X")
        assert c.get("/api/v1/log", params={"ref": f"{PUBLIC}@graft"}).status_code == 404


def test_log_leaves_out_versions_of_unreadable_models(env: Env) -> None:
    with env.client(env.writer) as c:
        r = c.get("/api/v1/log", params={"ref": f"{PUBLIC}@fork"})
    assert r.status_code == 200, r.text
    assert [v["model"] for v in r.json()] == [PUBLIC]
    assert "s3cret" not in r.text and "the secret run" not in r.text
    with env.client(env.admin) as c:  # who may read both sees both
        assert {v["model"] for v in c.get("/api/v1/log", params={
            "ref": f"{PUBLIC}@fork"}).json()} == {PUBLIC, SECRET}


def _same_but_id(a: httpx.Response, b: httpx.Response, ida: str, idb: str) -> None:
    assert (a.status_code, a.json()["error"]) == (b.status_code, b.json()["error"])
    assert a.json()["message"].replace(ida, "ID") == b.json()["message"].replace(idb, "ID")


def test_recording_another_models_version_looks_like_an_unknown_id(env: Env) -> None:
    absent = "ab" * 32
    with env.client(env.writer) as c:
        r = c.post("/api/v1/transfer/versions", json={"model": PUBLIC, "id": env.secret_v1})
        r2 = c.post("/api/v1/transfer/versions", json={"model": PUBLIC, "id": absent})
    assert r.status_code == 404, r.text
    _same_but_id(r, r2, env.secret_v1, absent)
    assert SECRET not in r.text


def test_files_of_another_models_version_look_like_an_unknown_id(env: Env) -> None:
    absent = "cd" * 32
    with env.client(env.writer) as c:
        r = c.get(f"/api/v1/versions/{env.secret_v1}/files/s.safetensors")
        r2 = c.get(f"/api/v1/versions/{absent}/files/s.safetensors")
    assert r.status_code == 404, r.text
    _same_but_id(r, r2, env.secret_v1, absent)
    assert SECRET not in r.text


# ---- 2. and 5. bodies: authenticated first, capped per route, timed out
def _raw(env: Env, head: str, body: bytes = b"", *, wait: float = 60) -> tuple[int, bytes]:
    """Send a request head and part of a body; the status and what came back."""
    return raw_request("127.0.0.1", env.server.port, head, body, timeout=wait)


def _head(method: str, path: str, length: int | None, token: str | None = None,
          extra: str = "") -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: x", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return "\r\n".join(lines) + "\r\n" + extra


@pytest.mark.parametrize("path", ["/api/repos/create", "/api/v1/tokens",
                                  f"/api/v1/models/{PUBLIC}/commits"])
def test_no_token_is_refused_before_the_body(env: Env, path: str) -> None:
    """300 MB announced, 64 KiB sent: the 401 comes without the rest (the server never
    reads, let alone buffers, what an unauthenticated caller sends)."""
    status, data = _raw(env, _head("POST", path, 300_000_000), b"{" * 65536)
    assert status == 401, data[:300]
    status, _ = _raw(env, _head("POST", path, 300_000_000, token="mvc_not-a-token"),
                     b"{" * 65536)
    assert status == 401


def test_a_body_over_the_routes_cap_is_413_before_it_is_read(env: Env) -> None:
    # max_body_mb=1 for JSON routes; commits have their own cap (max_commit_mb=4).
    status, data = _raw(env, _head("POST", "/api/v1/tokens", 2 << 20, env.admin), b"{")
    assert status == 413, data[:300]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"] == "TooLarge"
    status, _ = _raw(env, _head("POST", f"/api/v1/models/{PUBLIC}/commits", 5 << 20,
                                env.writer), b"{")
    assert status == 413
    with env.client(env.writer) as c:  # 2 MiB is over the JSON cap, within the commit cap
        r = c.post(f"/api/v1/models/{PUBLIC}/commits",
                   content=json.dumps({"files": [], "message": "x" * (2 << 20)}),
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "at least one file" in r.text, r.text


def test_a_chunked_body_is_cut_off_at_the_cap(env: Env) -> None:
    chunk = b"x" * 65536
    body = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * 40  # 2.5 MiB, no end
    status, data = _raw(env, _head("POST", "/api/v1/tokens", None, env.admin,
                                   "Transfer-Encoding: chunked\r\n"), body)
    assert status == 413, data[:300]


def test_a_body_that_never_finishes_is_answered_408(env: Env) -> None:
    status, data = _raw(env, _head("POST", f"/api/v1/models/{PUBLIC}/commits", 1000,
                                   env.writer), b'{"files": [')
    assert status == 408, data[:300]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"] == "BodyTimeout"


def test_headers_that_never_finish_are_answered_408(env: Env) -> None:
    """uvicorn holds a request head forever (no header timeout): the server's protocol
    (modelvc.httpproto) answers 408 after header_timeout, on a fresh connection and on a
    kept-alive one whose next head stalls."""
    for sent in ("", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "):
        with socket.create_connection(("127.0.0.1", env.server.port), timeout=60) as s:
            s.sendall(sent.encode())
            status, data = read_answer(s)
        assert status == 408, data[:300]
        assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"] == "HeaderTimeout"
    with socket.create_connection(("127.0.0.1", env.server.port), timeout=60) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHo")
        status, data = read_answer(s)
    assert status == 200 and b" 408 " in data, data[:600]  # the first answered, then 408


# ---- 6. and 10. inputs that answered 500 or dropped the connection
def _hf_commit(*files: tuple[str, bytes]) -> bytes:
    lines = [{"key": "header", "value": {"summary": "s"}}]
    lines += [{"key": "file", "value": {"path": p, "content": base64.b64encode(d).decode(),
                                        "encoding": "base64"}} for p, d in files]
    return b"\n".join(json.dumps(x).encode() for x in lines)


def _deep(n: int = 100_000) -> bytes:
    return b"[" * n + b"]" * n


GOOD = b"hello"
GOOD_ID = blake3.blake3(GOOD).hexdigest()
# family -> [(id, method, path, body or json, role)]
INPUTS: dict[str, list[tuple[str, str, str, Any, str]]] = {
    "hf": [
        ("nul-in-path", "GET", f"/{PUBLIC}/resolve/main/a%00b", None, "writer"),
        ("nul-in-repo", "GET", "/api/models/a%00b", None, "writer"),
        ("commit-path-nul", "POST", f"/api/models/{PUBLIC}/commit/main",
         _hf_commit(("a\u0000b.txt", GOOD)), "writer"),
        ("commit-path-5000", "POST", f"/api/models/{PUBLIC}/commit/main",
         _hf_commit(("n" * 5000, GOOD)), "writer"),
        ("commit-file-under-file", "POST", f"/api/models/{PUBLIC}/commit/main",
         _hf_commit(("p.safetensors/child", GOOD)), "writer"),
        ("commit-file-and-folder", "POST", f"/api/models/{PUBLIC}/commit/main",
         _hf_commit(("x.bin", GOOD), ("x.bin/y", GOOD)), "writer"),
        ("preupload-files-5", "POST", f"/api/models/{PUBLIC}/preupload/main",
         {"files": 5}, "writer"),
        ("create-deep-json", "POST", "/api/repos/create", _deep(), "writer"),
    ],
    "api": [
        ("token-expires-1e300", "POST", "/api/v1/tokens",
         b'{"name": "t", "subject": "s", "expires_in_seconds": 1e300}', "admin"),
        ("token-expires-nan", "POST", "/api/v1/tokens",
         b'{"name": "t", "subject": "s", "expires_in_seconds": NaN}', "admin"),
        ("token-name-huge", "POST", "/api/v1/tokens",
         {"name": "n" * 500_000, "subject": "s"}, "admin"),
        ("token-deep-json", "POST", "/api/v1/tokens", _deep(), "admin"),
        ("ref-number-beyond-int64", "GET",
         f"/api/v1/resolve?ref={PUBLIC}@v99999999999999999999", None, "admin"),
        ("ref-number-beyond-int32", "GET", f"/api/v1/resolve?ref={PUBLIC}@v4294967296",
         None, "admin"),
        ("gc-grace-nan", "POST", "/api/v1/gc", b'{"grace_seconds": NaN}', "admin"),
        # found by schemathesis (tests/campaign/test_schema.py, a 5-minute run): a bundle
        # the client sent that does not parse was a 500 (SignatureInvalid, a Corrupt)
        ("signature-bundle-empty", "POST", f"/api/v1/models/{PUBLIC}/signatures",
         {"bundle": "", "ref": f"{PUBLIC}@v1"}, "writer"),
        ("signature-bundle-not-json", "POST", f"/api/v1/models/{PUBLIC}/signatures",
         {"bundle": "{", "ref": f"{PUBLIC}@v1"}, "writer"),
        ("gc-grace-minus-inf", "POST", "/api/v1/gc", b'{"grace_seconds": -Infinity}',
         "admin"),
    ],
    "webhooks": [
        ("wait-nan", "POST", "/api/v1/webhooks/deliver", b'{"wait": NaN}', "admin"),
        ("remove-id-beyond-int64", "DELETE", "/api/v1/webhooks/99999999999999999999",
         None, "admin"),
        ("deliveries-id-beyond-int64", "GET",
         "/api/v1/webhooks/deliveries?webhook_id=99999999999999999999", None, "admin"),
        ("url-5mb", "POST", "/api/v1/webhooks",
         {"url": "http://x/" + "a" * 900_000}, "admin"),
        ("url-control-chars", "POST", "/api/v1/webhooks", {"url": "http://x/\u0000"},
         "admin"),
    ],
    "uploads": [
        ("upload-bytes-not-their-id", "PUT",
         f"/api/v1/models/{PUBLIC}/uploads/{GOOD_ID}?kind=blob", b"other bytes", "writer"),
        ("object-bytes-not-their-id", "PUT", f"/api/v1/objects/{GOOD_ID}?model={PUBLIC}",
         b"other bytes", "writer"),
        ("pack-garbage", "POST", f"/api/v1/objects/pack?model={PUBLIC}", b"garbage" * 10,
         "writer"),
        ("version-id-beyond-int64", "GET", f"/api/v1/versions/{'9' * 30}/files/x", None,
         "writer"),
    ],
}
CASES = [pytest.param(*case[1:], id=f"{family}-{case[0]}")
         for family, cases in INPUTS.items() for case in cases]


@pytest.mark.parametrize(("method", "path", "body", "role"), CASES)
def test_bad_input_is_a_4xx_json_error(env: Env, method: str, path: str, body: Any,
                                       role: str) -> None:
    token = env.admin if role == "admin" else env.writer
    kw: dict[str, Any] = {"content": body, "headers": {"Content-Type": "application/json"}
                          } if isinstance(body, bytes) else (
        {"json": body} if body is not None else {})
    with env.client(token) as c:
        r = c.request(method, path, **kw)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    assert isinstance(r.json(), dict)
    if "commit-path" in path or "commit/main" in path:
        assert r.headers.get("x-error-code")


def test_hf_commit_of_paths_that_would_not_be_stored_is_refused(env: Env) -> None:
    """7: `.git/config`, `.modelvc/...`, `a/.modelvc/x` used to answer 200 with a new
    commit that lacked the file."""
    with env.client(env.writer) as c:
        before = c.get(f"/api/models/{PUBLIC}").json()["sha"]
        for path in (".git/config", ".modelvc/config.json", "a/.modelvc/x", "__pycache__/m"):
            r = c.post(f"/api/models/{PUBLIC}/commit/main",
                       content=_hf_commit(("ok.txt", GOOD), (path, GOOD)))
            assert r.status_code == 400, (path, r.text)
            assert path in r.json()["error"] and "would not be stored" in r.json()["error"]
        assert c.get(f"/api/models/{PUBLIC}").json()["sha"] == before


def test_stored_bounds_token_names_and_webhook_urls(env: Env) -> None:
    """10: a 50 MB token name or 5 MB webhook URL is refused (here, within the body cap)."""
    with env.client(env.admin) as c:
        r = c.post("/api/v1/tokens", json={"name": "n" * 129, "subject": "s"})
        assert r.status_code == 422
        r = c.post("/api/v1/webhooks", json={"url": "http://x/" + "a" * 3000})
        assert r.status_code == 422
        names = [t["name"] for t in c.get("/api/v1/tokens").json()]
        assert all(len(n) <= 128 for n in names)


def test_the_ui_login_form_is_read_without_a_bearer_token(env: Env) -> None:
    """The web UI's login POST carries the token in its body, and its actions a session
    cookie: the body guard must not refuse them for lacking `Authorization`."""
    with httpx.Client(base_url=env.server.url, timeout=60, verify=False) as c:
        r = c.post("/ui/login", data={"token": env.writer})
    # The UI's own answer (a form without its login cookie), not the guard's 401.
    assert r.status_code < 500 and "needs an API token" not in r.text, r.text[:300]
    assert "login form expired" in r.text
