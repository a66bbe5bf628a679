"""Two server processes on one registry (one SQLite database, one object folder)
behind a balancer: uploads that reached one process prove possession for a commit or
a pushed version that reaches the other (the proof is in the database)."""

from __future__ import annotations

from pathlib import Path

import httpx

from modelvc.registry import Registry
from modelvc.remote import RemoteRegistry
from modelvc.transfer import push
from tests.conftest import write_model
from tests.services.server import ServerProcess, grant_token

from .balancer import Balancer

API = "/api/v1"


def uploads_to_first(method: str, path: str) -> int:
    """Object bytes (commit uploads, pushed objects and packs) to backend 0, the rest
    (negotiation, the commit itself, version records, refs) to backend 1."""
    sends = (method == "PUT" and ("/uploads/" in path or "/objects/" in path)) or (
        method == "POST" and path.endswith("/objects/pack"))
    return 0 if sends else 1


def check_split_possession(urls: list[str], registry: Path, tmp: Path) -> None:
    """Model b holds a file; writers of other models, who may not read b, commit and
    push that same file through a balancer that sends the bytes to urls[0] and
    everything else to urls[1]."""
    admin = grant_token(registry, "boss", "admin", "*")
    writer = grant_token(registry, "wc", "writer", "c")
    idle = grant_token(registry, "wd", "writer", "c")
    pusher = grant_token(registry, "wp", "writer", "p")
    f = tmp / "shared" / "model.safetensors"
    write_model(f, 7)
    with RemoteRegistry(urls[0], token=admin) as boss:
        b1 = boss.commit(f, model="b")
    with Registry.open(registry) as srv:
        b_objects = {o.id for o in srv.objects_of(f"b@{b1.id}")}

    # Knowing the ids is not enough: a writer of c who sent nothing is refused on
    # either server, worded as for an absent object.
    with Registry.open(registry) as srv:
        files = [e.to_json() for e in srv.manifest(f"b@{b1.id}").files]
    for url in urls:
        r = httpx.post(f"{url}{API}/models/c/commits", json={"files": files},
                       headers={"Authorization": f"Bearer {idle}"}, timeout=60)
        assert r.status_code == 404 and r.json()["error"] == "ObjectNotFound", r.text

    with Balancer(urls, uploads_to_first) as lb:
        # Commit over HTTP: uploads land on server 0, the commit on server 1.
        with RemoteRegistry(lb.url, token=writer) as rc:
            c1 = rc.commit(f, model="c", message="same bytes as b")
        assert lb.sent(0, "PUT", "/uploads/") >= 5  # every segment: b's look absent to wc
        assert lb.sent(1, "PUT", "/uploads/") == 0
        assert lb.sent(1, "POST", "/models/c/commits") == 1
        assert [s for m, p, _, s in lb.log if p.startswith(f"{API}/models/c/commits")] == [200]

        # Push: objects land on server 0, the version record on server 1.
        src = Registry.init(tmp / "src")
        try:
            p1 = src.commit(f, model="p", message="pushed")
            result = push(src, lb.url, ["p"], token=pusher)
            assert result.versions == [p1.id]
        finally:
            src.close()
        assert lb.sent(0, "PUT", "/objects/") + lb.sent(0, "POST", "/objects/pack") >= 1
        assert lb.sent(1, "POST", "/transfer/versions") == 1

    with Registry.open(registry) as srv:
        got = srv.resolve("c@main")
        assert got.id == c1.id and got.author == "wc"
        assert {o.id for o in srv.objects_of("c@main")} - {c1.id} <= b_objects
        assert srv.resolve("p@main").id == p1.id
        assert not srv.verify().corrupt
    # Each proof is the uploader's own: a writer of d who sent nothing is refused.
    d_writer = grant_token(registry, "wd2", "writer", "d")
    r = httpx.post(f"{urls[1]}{API}/models/d/commits", json={"files": files},
                   headers={"Authorization": f"Bearer {d_writer}"}, timeout=60)
    assert r.status_code == 404, r.text


def test_uploads_to_one_server_commit_through_another(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    Registry.init(repo).close()
    servers = [ServerProcess(repo, tmp_path / f"{n}.log").start() for n in "ab"]
    try:
        check_split_possession([s.url for s in servers], repo, tmp_path)
    finally:
        for s in servers:
            s.stop()
