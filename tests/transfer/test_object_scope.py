"""Object reads are scoped to models: a reader of one model who knows an object id of
another model cannot read it, nor learn that it exists (real server, real tokens)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from modelvc.registry import Registry
from modelvc.transfer import clone, pull, push
from modelvc.transfer.protocol import decode_pack
from tests.conftest import write_model
from tests.services.server import ServerProcess, grant_token
from tests.transfer.conftest import Trainer

API = "/api/v1"


def _ids(reg: Registry, ref: str) -> set[str]:
    return {o.id for o in reg.objects_of(ref)}


@pytest.fixture
def two_models(server: ServerProcess, make_reg: Callable[[str], Registry], tmp_path: Path
               ) -> Registry:
    """On the server: b@v1 (a model and a secret file), and a@v1 forked from it: a's
    tensors are deltas against b's, which only b lists. Returns the local registry the
    versions were pushed from."""
    src = make_reg("src")
    path = tmp_path / "b" / "model.safetensors"
    base = write_model(path, 50)
    (path.parent / "secret.bin").write_bytes(b"only b has this" * 100)
    src.commit(path.parent, model="b", message="b")
    write_model(tmp_path / "a" / "model.safetensors", 51, base=base)
    src.commit(tmp_path / "a", model="a", parent="b@v1", message="fork of b")
    push(src, server.url, ["b"])
    push(src, server.url, ["a"])  # its parent, b@v1, is there already
    return src


def test_a_reader_reads_only_its_models_objects(
        server: ServerProcess, two_models: Registry, make_reg: Callable[[str], Registry]) -> None:
    src = two_models
    a_v1 = _ids(src, "a@v1")
    with Registry.open(server.registry) as srv:
        delta_refs = {o.ref_id for o in srv.objects_of("a@v1") if o.ref_id} - a_v1
        only_b = _ids(srv, "b@v1") - a_v1 - delta_refs
        b_v1 = srv.resolve("b@v1").id
        b_blobs = {o.id for o in srv.objects_of("b@v1") if o.kind == "blob"}
        assert delta_refs and only_b  # a's tensors are deltas on objects only b lists
        assert {v for vs in srv._meta.versions_using(delta_refs).values() for v in vs} == {b_v1}
    reader = grant_token(server.registry, "ann", "reader", "a")
    h = {"Authorization": f"Bearer {reader}"}
    with httpx.Client(base_url=server.url, headers=h, timeout=30) as c:
        absent = "0" * 64
        secret = sorted(only_b & b_blobs)[0]  # secret.bin
        # An object of b: answered exactly as an absent object, by every route.
        got, none = (c.get(f"{API}/objects/{i}", params={"model": "a"}) for i in (secret, absent))
        assert got.status_code == none.status_code == 404
        assert got.text.replace(secret, absent) == none.text
        r = c.post(f"{API}/objects/fetch", json={"model": "a", "ids": [secret]})
        assert r.status_code == 404
        r = c.post(f"{API}/objects/fetch", json={"model": "a", "ids": [*sorted(a_v1), secret]})
        assert r.status_code == 404  # one unreadable id refuses the whole pack
        assert c.get(f"{API}/objects/{secret}", params={"model": "b"}).status_code == 403
        have = c.post(f"{API}/objects/have",
                      json={"model": "a", "ids": [secret, *sorted(a_v1)]}).json()["have"]
        assert set(have) == a_v1
        # a's objects, delta references of a deleted version included, are readable.
        closure = c.post(f"{API}/transfer/closure",
                         json={"model": "a", "ids": [src.resolve("a@v1").id]}).json()
        ids = [o["id"] for o in closure["objects"]]
        assert delta_refs <= set(ids)
        r = c.post(f"{API}/objects/fetch", json={"model": "a", "ids": ids})
        assert r.status_code == 200
        assert {oid: len(data) for oid, data in decode_pack(r.content)} == \
            {oid: len(src._store.get(oid)) for oid in ids}
        ref = sorted(delta_refs)[0]
        r = c.get(f"{API}/objects/{ref}", params={"model": "a"})
        assert r.status_code == 200 and r.content == src._store.get(ref)
    # And the reader pulls a (through the same routes).
    dst = make_reg("dst")
    pulled = pull(dst, server.url, ["a"], token=reader)
    assert pulled.versions == [src.resolve("a@v1").id]
    assert dst.resolve("a@main").id == src.resolve("a@v1").id
    assert not dst.verify().corrupt


def test_a_writer_pushing_another_models_objects_must_send_them(
        server: ServerProcess, two_models: Registry, make_reg: Callable[[str], Registry],
        tmp_path: Path) -> None:
    """A writer of c whose model has exactly b's content: the server does not admit
    holding b's objects (uploads/missing, objects/have), so the push sends them, and
    then c reads them as its own."""
    writer = grant_token(server.registry, "cid", "writer", "c")
    mine = make_reg("mine")
    tc = Trainer(mine, tmp_path, "c")
    tc.n = 49  # its first commit has b's seed (50): every object of c@v1 is one of b@v1's
    tc.commit()
    objs = _ids(mine, "c@v1")
    manifest = mine.resolve("c@v1").id
    assert objs - {manifest} <= _ids(two_models, "b@v1")
    h = {"Authorization": f"Bearer {writer}"}
    with httpx.Client(base_url=server.url, headers=h, timeout=30) as c:
        miss = c.post(f"{API}/models/c/uploads/missing", json={"ids": sorted(objs)}).json()
        assert set(miss["missing"]) == objs
        assert c.post(f"{API}/objects/have",
                      json={"model": "c", "ids": sorted(objs)}).json()["have"] == []
        # Knowing the ids is not enough to graft b's objects into c: a pushed manifest
        # naming them is refused (as if they were absent) until their bytes are sent.
        mraw = mine._store.get(manifest)
        assert c.put(f"{API}/objects/{manifest}", params={"model": "c"},
                     content=mraw).status_code == 200
        r = c.post(f"{API}/transfer/versions", json={"model": "c", "id": manifest})
        assert r.status_code == 404 and r.json()["error"] == "ObjectNotFound", r.text
        # ...and so is an HTTP commit naming one of them, worded as for an absent id.
        f = mine.manifest("c@v1").files[0]
        forged = c.post(f"{API}/models/c/commits", json={"files": [f.to_json()]})
        absent = "0" * 64
        listed = sorted(s.id for s in f.segments)[0]
        seg_abs = [{**f.to_json(), "segments": [
            {**x, "id": absent if x["id"] == listed else x["id"]}
            for x in f.to_json()["segments"]]}]
        none = c.post(f"{API}/models/c/commits", json={"files": seg_abs})
        assert forged.status_code == none.status_code == 404
        assert forged.text.replace(listed, absent) == none.text
    with Registry.open(server.registry) as srv:
        assert "c" not in srv.models() or not srv.versions("c")
    r = push(mine, server.url, ["c"], token=writer)
    assert r.versions == [manifest]
    # All sent but the manifest sent above: the server admitted holding none of b's.
    assert (r.objects_sent, r.objects_skipped) == (len(objs) - 1, 1)
    with httpx.Client(base_url=server.url, headers=h, timeout=30) as c:
        got = c.post(f"{API}/objects/fetch", json={"model": "c", "ids": sorted(objs)})
        assert got.status_code == 200
    # A clone by an admin still sees everything.
    copy, _ = clone(server.url, tmp_path / "copy")
    try:
        assert set(copy.models()) == {"a", "b", "c"}
        assert not copy.verify().corrupt
    finally:
        copy.close()
