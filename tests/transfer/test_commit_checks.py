"""A commit over HTTP names segments by id: the server records one only if it holds
that object and the object decodes to the size the file list says (a tensor's dtype and
shape must fit that size). An object's id is of its bytes only, so a segment may name
a tensor object as bytes, or a blob as a tensor, as a local commit's dedup does.
A refused commit records nothing (real server, real writer token)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import httpx
import pytest

from modelvc.registry import Registry
from modelvc.remote import RemoteRegistry
from tests.conftest import write_model
from tests.services.server import ServerProcess, grant_token

NOTES = b"release notes\n" * 50


@pytest.fixture
def writer(server: ServerProcess, tmp_path: Path) -> Iterator[tuple[RemoteRegistry, httpx.Client]]:
    """A writer of model m, which has one version (a safetensors file and a text file)."""
    token = grant_token(server.registry, "wes", "writer", "m")
    d = tmp_path / "ckpt"
    write_model(d / "model.safetensors", 1)
    (d / "notes.txt").write_bytes(NOTES)
    reg = Registry.open(server.url, token=token)
    assert isinstance(reg, RemoteRegistry)
    reg.commit(d, model="m", message="v1")
    with httpx.Client(base_url=f"{server.url}/api/v1/models/m", timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as c:
        yield reg, c
    reg.close()


def _files(reg: RemoteRegistry) -> list[dict[str, Any]]:
    return [f.to_json() for f in reg.manifest("m@main").files]


def _state(reg: RemoteRegistry) -> tuple[Any, ...]:
    return ([v.id for v in reg.versions("m")], [(r.name, r.version_id) for r in reg.refs("m")],
            len(reg.audit(model="m")))


def _refused(c: httpx.Client, files: list[dict[str, Any]], error: str) -> None:
    r = c.post("/commits", json={"files": files, "message": "forged"})
    assert r.status_code in (400, 404, 409, 422), r.text
    assert r.json()["error"] == error, r.text


def _seg(files: list[dict[str, Any]], tensor: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """A (file, segment) pair of the kind asked."""
    return next((f, s) for f in files for s in f["segments"] if ("t" in s) == tensor)


def test_a_commit_naming_a_wrong_segment_is_refused_and_records_nothing(
        writer: tuple[RemoteRegistry, httpx.Client]) -> None:
    reg, c = writer
    before = _state(reg)
    good = _files(reg)

    # A byte segment the server holds, declared longer (the file size made to add up).
    files = copy.deepcopy(good)
    f, s = _seg(files, tensor=False)
    s["n"] += 10
    f["size"] += 10
    _refused(c, files, "UsageError")

    # An id the server does not hold.
    files = copy.deepcopy(good)
    _, s = _seg(files, tensor=False)
    s["id"] = blake3.blake3(b"never uploaded").hexdigest()
    _refused(c, files, "ObjectNotFound")

    # A tensor whose dtype and shape do not fit its size, or a dtype nobody knows.
    files = copy.deepcopy(good)
    _, s = _seg(files, tensor=True)
    s["shape"] = [s["n"]]
    _refused(c, files, "UsageError")
    files = copy.deepcopy(good)
    _, s = _seg(files, tensor=False)
    s.update(t="x", dtype="F4", shape=[2 * s["n"]])
    _refused(c, files, "UsageError")

    # A freshly uploaded byte segment (no database row yet) under a wrong size.
    data = b"fresh bytes " * 100
    oid = blake3.blake3(data).hexdigest()
    assert c.put(f"/uploads/{oid}", params={"kind": "blob"}, content=data).status_code == 200
    entry = {"path": "extra.bin", "size": len(data) + 1, "sha256": "0" * 64,
             "format": "bytes", "segments": [{"id": oid, "n": len(data) + 1}]}
    _refused(c, [*good, entry], "UsageError")

    # Uploaded bytes that do not hash to the id they are sent under are not stored.
    other = blake3.blake3(b"other").hexdigest()
    r = c.put(f"/uploads/{other}", params={"kind": "blob"}, content=b"not other")
    assert r.status_code == 400 and r.json()["error"] == "DamagedUpload"  # the client's
    assert c.post("/uploads/missing", json={"ids": [other]}).json()["missing"] == [other]

    assert _state(reg) == before  # no version, no ref move, no audit entry

    # The same fresh segment at its true size is accepted.
    entry["size"] = len(data)
    entry["segments"] = [{"id": oid, "n": len(data)}]
    r = c.post("/commits", json={"files": [*good, entry], "message": "v2"})
    assert r.status_code == 200, r.text
    assert sorted(v.number for v in reg.versions("m")) == [1, 2]


def test_a_commit_may_name_an_object_under_either_kind(
        writer: tuple[RemoteRegistry, httpx.Client], server: ServerProcess, tmp_path: Path
        ) -> None:
    """Issue 11.1: a tensor object named as a byte segment, a blob as a U8 tensor, a
    tensor under another dtype and shape of its size: the same bytes, so the same
    object; the version is recorded and checks out bit-exact."""
    reg, c = writer
    files = _files(reg)
    f, s = _seg(files, tensor=True)
    s["dtype"] = {"I64": "F64", "F32": "I32", "F16": "I16"}[s["dtype"]]  # same width
    s["shape"] = [s["n"] // 4 if s["dtype"] == "I32" else s["n"] // 8]
    t = next(x for x in f["segments"] if "t" in x and x is not s)
    for k in ("t", "dtype", "shape"):
        del t[k]
    _, b = _seg(files, tensor=False)
    b.update(t="bytes_as_tensor", dtype="U8", shape=[b["n"]])
    r = c.post("/commits", json={"files": files, "message": "same bytes, other kinds"})
    assert r.status_code == 200, r.text
    v = reg.resolve("m@main")
    assert v.number == 2 and "t" not in t
    with Registry.open(server.registry) as local:  # the rows recorded: by encoding
        kinds = {r.id: r.kind for r in local.objects_of("m@v2")}
    assert kinds[s["id"]] == kinds[t["id"]] == "tensor" and kinds[b["id"]] == "blob"
    for ref in ("m@v1", "m@v2"):
        reg.checkout(ref, tmp_path / ref)
    for name in ("model.safetensors", "notes.txt"):
        assert (tmp_path / "m@v1" / name).read_bytes() == (tmp_path / "m@v2" / name).read_bytes()
