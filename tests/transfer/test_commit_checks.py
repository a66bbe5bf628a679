"""A commit over HTTP names segments by id: the server records one only if it holds
that object and the object is what the file list says (kind, raw size, dtype, shape).
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
from tests.transfer.serverproc import ServerProc, make_token

NOTES = b"release notes\n" * 50


@pytest.fixture
def writer(server: ServerProc, tmp_path: Path) -> Iterator[tuple[RemoteRegistry, httpx.Client]]:
    """A writer of model m, which has one version (a safetensors file and a text file)."""
    token = make_token(server.registry, "wes", "writer", "m")
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

    # A tensor object named as a byte segment of its raw size, and the reverse.
    files = copy.deepcopy(good)
    _, s = _seg(files, tensor=True)
    for k in ("t", "dtype", "shape"):
        del s[k]
    _refused(c, files, "UsageError")
    files = copy.deepcopy(good)
    _, s = _seg(files, tensor=False)
    s.update(t="x", dtype="U8", shape=[s["n"]])
    _refused(c, files, "UsageError")

    # A tensor of the right size under another dtype, or another shape.
    files = copy.deepcopy(good)
    _, s = _seg(files, tensor=True)
    s["dtype"] = {"I64": "F64", "F32": "I32", "F16": "I16"}[s["dtype"]]  # same width
    _refused(c, files, "UsageError")
    files = copy.deepcopy(good)
    _, s = _seg(files, tensor=True)
    s["shape"] = [s["n"] // 4]
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
    assert r.status_code >= 400 and r.json()["error"] == "CorruptObject"
    assert c.post("/uploads/missing", json={"ids": [other]}).json()["missing"] == [other]

    assert _state(reg) == before  # no version, no ref move, no audit entry

    # The same fresh segment at its true size is accepted.
    entry["size"] = len(data)
    entry["segments"] = [{"id": oid, "n": len(data)}]
    r = c.post("/commits", json={"files": [*good, entry], "message": "v2"})
    assert r.status_code == 200, r.text
    assert sorted(v.number for v in reg.versions("m")) == [1, 2]
