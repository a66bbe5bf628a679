"""Big objects resume *within* the object: a real `modelvc server` process is killed
in the middle of a ~42 MB tensor object (six 8 MiB chunks); the next push sends only
what the server's upload session lacks, shown by the bytes the client sent and by the
server's own log ("upload complete": bytes this process received). Also: a chunk
damaged in transit is refused and sent again, a damaged spool fails verification and
the object restarts at byte 0, sessions are per subject, stale sessions expire, and
pull and commit over HTTP resume the same way."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3
import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from modelvc.errors import CorruptObject, ModelNotFound, StorageError
from modelvc.meta.api import ObjectRow
from modelvc.registry import Registry
from modelvc.remote import RemoteRegistry
from modelvc.transfer import HttpEnd, local_end, pull, push, transfer
from modelvc.wire.frames import CHUNK_BYTES, FRAME_HEAD
from tests.server.balancer import Balancer
from tests.services.server import ServerProcess, grant_token


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    """A registry holding model `big`: one 48 MiB float32 tensor (stored ~42 MB) and a
    bias; and the safetensors file it was committed from."""
    tmp = tmp_path_factory.mktemp("resume-src")
    rng = np.random.default_rng(0)
    path = tmp / "big" / "model.safetensors"
    path.parent.mkdir(parents=True)
    save_file({"w": rng.standard_normal((3072, 4096), dtype=np.float32),
               "b": np.arange(16, dtype=np.float32)}, str(path))
    reg = Registry.init(tmp / "src")
    reg.commit(path.parent, model="big", message="base")
    yield reg, path
    reg.close()


def _big(reg: Registry) -> ObjectRow:
    rows = reg._meta.version_objects(reg.resolve("big@main").id)
    return max(rows, key=lambda r: r.stored_size)


def _kill(server: ServerProcess) -> None:
    """kill -9: the server gets no chance to clean up."""
    assert server.proc is not None
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait(30)


def _killer(server: ServerProcess, after: int, kind: str | None = None
            ) -> Callable[[int, int], None]:
    """A progress callback that kills the server once AFTER bytes were handed over and,
    for an upload (KIND), once the server's session holds two chunks of it."""
    def progress(done: int, total: int) -> None:
        if done < after or server.proc is None or server.proc.poll() is not None:
            return
        if kind is not None:
            deadline = time.monotonic() + 60
            while not any(p.stat().st_size >= 2 * CHUNK_BYTES
                          for p in _spools(server.registry, kind)):
                assert time.monotonic() < deadline, "the server never held two chunks"
                time.sleep(0.01)
        _kill(server)
    return progress


def _spools(root: Path, kind: str = "object") -> list[Path]:
    base = root / ".modelvc" / "tmp" / "uploads" / kind
    return sorted(base.glob("*/*")) if base.is_dir() else []


def _log(server: ServerProcess, msg: str) -> list[dict[str, Any]]:
    out = []
    for line in server.log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("msg") == msg:
            out.append(rec)
    return out


def _held(server: ServerProcess, token: str, oid: str, size: int) -> int:
    r = httpx.get(f"{server.url}/api/v1/uploads/{oid}",
                  params={"model": "big", "kind": "object", "size": size},
                  headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["stored"] is False
    return int(r.json()["offset"])


def _interrupted_push(server: ServerProcess, token: str, src: Registry, oid: str) -> None:
    """A push killed (with the server) after two chunks of the big object landed."""
    with pytest.raises(StorageError):
        push(src, server.url, ["big"], token=token, jobs=1,
             progress=_killer(server, 3 * CHUNK_BYTES, "object"))
    assert server.proc is not None and server.proc.poll() is not None
    with Registry.open(server.registry) as srv:  # nothing partial is an object
        assert not srv._store.has(oid)
        with pytest.raises(ModelNotFound):
            srv.versions("big")


def _check_served(registry: Path, src_file: Path, tmp: Path) -> None:
    with Registry.open(registry) as srv:
        report = srv.verify()
        assert not report.corrupt and not report.broken_versions
        out = tmp / "checkout"
        srv.checkout("big@main", out)
        assert (out / "model.safetensors").read_bytes() == src_file.read_bytes()


def _resume(url: str, token: str, src: Registry, **kw: Any) -> tuple[HttpEnd, Any]:
    end = HttpEnd(url, token=token, **kw)
    try:
        result = transfer(local_end(src), end, ["big"])
    finally:
        end.close()
    return end, result


def test_a_push_killed_mid_object_resumes_with_the_rest_of_it(
        source: tuple[Registry, Path], served: tuple[ServerProcess, str], tmp_path: Path) -> None:
    src, src_file = source
    server, token = served
    big = _big(src)
    assert big.stored_size > 4 * CHUNK_BYTES
    _interrupted_push(server, token, src, big.id)
    # The server's upload session holds what arrived before the kill (at least the two
    # chunks the killer waited for; a write cut by the kill keeps its correct prefix).
    [spool] = _spools(server.registry)
    assert spool.name == f"{big.id}.{big.stored_size}"
    held = spool.stat().st_size
    assert 2 * CHUNK_BYTES <= held < big.stored_size

    server.start()
    assert _held(server, token, big.id, big.stored_size) == held
    end, result = _resume(server.url, token, src)
    assert result.versions == [src.resolve("big@main").id]
    # Only the remainder travelled: the client's count and the server's own.
    assert end.sent[big.id] == big.stored_size - held
    assert result.bytes_resumed == held
    [done] = [r for r in _log(server, "upload complete") if r["object"] == big.id]
    assert done["received"] == big.stored_size - held and done["resumed_from"] == held
    assert any(r["object"] == big.id and r["offset"] == held
               for r in _log(server, "upload resumed"))
    assert _spools(server.registry) == []  # the session is gone once stored
    _check_served(server.registry, src_file, tmp_path)


class DamageOneChunk(httpx.HTTPTransport):
    """A network hop that flips one bit in the second chunk (frame) of the first
    upload request."""

    def __init__(self) -> None:
        super().__init__()
        self.damaged = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if (request.method == "PUT" and request.url.path.startswith("/api/v1/uploads/")
                and not self.damaged):
            body = bytearray(request.read())
            body[2 * FRAME_HEAD.size + CHUNK_BYTES + 1000] ^= 0x10
            request = httpx.Request(request.method, request.url, headers=request.headers,
                                    content=bytes(body))
            self.damaged += 1
        return super().handle_request(request)


def test_a_chunk_damaged_in_transit_is_refused_and_sent_again(
        source: tuple[Registry, Path], served: tuple[ServerProcess, str], tmp_path: Path) -> None:
    src, src_file = source
    server, token = served
    big = _big(src)
    hop = DamageOneChunk()
    end, result = _resume(server.url, token, src, transport=hop)
    assert hop.damaged == 1 and result.versions
    [refused] = [r for r in _log(server, "upload chunk refused") if r["object"] == big.id]
    assert refused["offset"] == CHUNK_BYTES
    # The first chunk was kept; the rest of that request was read and dropped, then
    # sent again from the second chunk on.
    assert end.sent[big.id] == big.stored_size + (big.stored_size - CHUNK_BYTES)
    [done] = [r for r in _log(server, "upload complete") if r["object"] == big.id]
    assert done["received"] == big.stored_size
    _check_served(server.registry, src_file, tmp_path)


def test_a_damaged_spool_fails_verification_and_the_object_restarts_cleanly(
        source: tuple[Registry, Path], served: tuple[ServerProcess, str], tmp_path: Path) -> None:
    src, src_file = source
    server, token = served
    big = _big(src)
    _interrupted_push(server, token, src, big.id)
    [spool] = _spools(server.registry)
    held = spool.stat().st_size
    with spool.open("r+b") as f:  # a bit rots in what the server already holds
        f.seek(CHUNK_BYTES + 12345)
        byte = f.read(1)
        f.seek(CHUNK_BYTES + 12345)
        f.write(bytes([byte[0] ^ 0x01]))

    server.start()
    end, result = _resume(server.url, token, src)
    assert result.versions
    [failed] = [r for r in _log(server, "upload failed verification")
                if r["object"] == big.id]
    assert failed["size"] == big.stored_size
    # The resumed rest, then the whole object again from byte 0.
    assert end.sent[big.id] == (big.stored_size - held) + big.stored_size
    [done] = [r for r in _log(server, "upload complete") if r["object"] == big.id]
    assert done["resumed_from"] == 0 and done["received"] == big.stored_size
    assert _spools(server.registry) == []
    _check_served(server.registry, src_file, tmp_path)


def test_an_object_that_fails_verification_when_sent_whole_is_not_sent_again(
        served: tuple[ServerProcess, str], tmp_path: Path) -> None:
    """The source's own copy is damaged: one full upload, refused, nothing kept."""
    server, token = served
    rng = np.random.default_rng(2)
    path = tmp_path / "bad" / "model.safetensors"
    path.parent.mkdir()
    save_file({"w": rng.standard_normal((1024, 4096), dtype=np.float32)}, str(path))
    with Registry.init(tmp_path / "src") as src:
        src.commit(path.parent, model="big")
        big = _big(src)
        stored = src._store.path(big.id)  # type: ignore[attr-defined]
        os.chmod(stored, 0o644)
        with stored.open("r+b") as f:
            f.seek(big.stored_size // 2)
            byte = f.read(1)
            f.seek(big.stored_size // 2)
            f.write(bytes([byte[0] ^ 0x01]))
        end = HttpEnd(server.url, token=token)
        try:
            with pytest.raises(CorruptObject):
                transfer(local_end(src), end, ["big"])
        finally:
            end.close()
    assert end.sent[big.id] == big.stored_size  # once, not in a loop
    assert _spools(server.registry) == []
    with Registry.open(server.registry) as srv:
        assert not srv._store.has(big.id)


def test_another_subjects_session_is_not_reused(
        source: tuple[Registry, Path], served: tuple[ServerProcess, str], tmp_path: Path) -> None:
    src, src_file = source
    server, token = served
    big = _big(src)
    _interrupted_push(server, token, src, big.id)
    server.start()
    other = grant_token(server.registry, "olga", "writer", "big")
    [spool] = _spools(server.registry)
    held = spool.stat().st_size
    # Olga holds nothing, and cannot append to Wes's session at its offset.
    assert _held(server, other, big.id, big.stored_size) == 0
    chunk = b"\0" * 1024
    r = httpx.put(f"{server.url}/api/v1/uploads/{big.id}",
                  params={"model": "big", "kind": "object", "size": big.stored_size,
                          "offset": held},
                  content=FRAME_HEAD.pack(len(chunk), blake3.blake3(chunk).digest()) + chunk,
                  headers={"Authorization": f"Bearer {other}"}, timeout=30)
    assert r.status_code == 409 and r.json()["error"] == "SessionMoved", r.text
    end, result = _resume(server.url, other, src)
    assert result.versions and end.sent[big.id] == big.stored_size  # all of it
    [done] = [r for r in _log(server, "upload complete") if r["object"] == big.id]
    assert done["subject"] == "olga" and done["received"] == big.stored_size
    # Wes's spool is untouched (it expires with age); the object is stored once.
    assert _spools(server.registry) == [spool] and spool.stat().st_size == held
    _check_served(server.registry, src_file, tmp_path)


def test_a_stale_session_expires(
        source: tuple[Registry, Path], served: tuple[ServerProcess, str]) -> None:
    src, _ = source
    server, token = served
    big = _big(src)
    _interrupted_push(server, token, src, big.id)
    [spool] = _spools(server.registry)
    old = time.time() - 25 * 3600  # untouched for longer than upload_ttl_hours (24)
    os.utime(spool, (old, old))
    server.start()
    assert _held(server, token, big.id, big.stored_size) == 0
    assert not spool.exists()


def test_a_pull_killed_mid_object_resumes_into_its_partial_file(
        source: tuple[Registry, Path], served: tuple[ServerProcess, str], tmp_path: Path) -> None:
    src, src_file = source
    server, token = served
    big = _big(src)
    push(src, server.url, ["big"], token=token)
    dst = Registry.init(tmp_path / "dst")
    try:
        with pytest.raises(StorageError):
            pull(dst, server.url, ["big"], token=token, jobs=1,
                 progress=_killer(server, 2 * CHUNK_BYTES))
        assert not dst._store.has(big.id)
        with pytest.raises(ModelNotFound):
            dst.versions("big")
        [part] = sorted((tmp_path / "dst" / ".modelvc" / "tmp" / "recv" / "object")
                        .glob("*/*"))
        held = part.stat().st_size
        assert 2 * CHUNK_BYTES <= held < big.stored_size

        server.start()
        end = HttpEnd(server.url, token=token)
        try:
            result = transfer(end, local_end(dst), ["big"])
        finally:
            end.close()
        assert result.versions == [src.resolve("big@main").id]
        assert end.got[big.id] == big.stored_size - held  # a Range request for the rest
        assert result.bytes_resumed == held
        assert not part.exists()
        assert not dst.verify().corrupt
        dst.checkout("big@main", tmp_path / "out")
        assert (tmp_path / "out" / "model.safetensors").read_bytes() == src_file.read_bytes()
    finally:
        dst.close()


def test_a_commit_over_http_killed_mid_tensor_resumes(
        source: tuple[Registry, Path], served: tuple[ServerProcess, str], tmp_path: Path) -> None:
    _, src_file = source
    server, token = served
    raw = 3072 * 4096 * 4
    with RemoteRegistry(server.url, token=token) as remote, pytest.raises(StorageError):
        remote.commit(src_file.parent, model="big",
                      progress=_killer(server, 3 * CHUNK_BYTES, "raw"))
    [spool] = _spools(server.registry, "raw")
    held = spool.stat().st_size
    assert 2 * CHUNK_BYTES <= held < raw

    server.start()
    seen: list[int] = []
    with RemoteRegistry(server.url, token=token) as remote:
        v = remote.commit(src_file.parent, model="big",
                          progress=lambda done, total: seen.append(done))
        # At most the small segments besides the rest of the big one.
        assert raw - held <= remote.last_upload_bytes <= raw - held + 4096
    assert seen and seen == sorted(seen) and seen[-1] >= raw  # bytes the server holds
    [done] = [r for r in _log(server, "upload complete") if r["kind"] == "raw"]
    assert done["received"] == raw - held and done["resumed_from"] == held
    assert _spools(server.registry, "raw") == []
    with Registry.open(server.registry) as srv:
        assert srv.resolve("big@main").id == v.id
    _check_served(server.registry, src_file, tmp_path)


def test_a_push_into_a_folder_resumes_from_its_partial_file(
        source: tuple[Registry, Path], tmp_path: Path) -> None:
    src, src_file = source
    big = _big(src)

    class Cut(Exception):
        pass

    def cut(done: int, total: int) -> None:
        if done >= 2 * CHUNK_BYTES:
            raise Cut

    dst = Registry.init(tmp_path / "dst")
    try:
        with pytest.raises(Cut):
            push(src, dst, ["big"], jobs=1, progress=cut)
        assert not dst._store.has(big.id)
        [part] = sorted((tmp_path / "dst" / ".modelvc" / "tmp" / "recv" / "object")
                        .glob("*/*"))
        held = part.stat().st_size
        assert held >= 2 * CHUNK_BYTES
        result = push(src, dst, ["big"])
        assert result.bytes_resumed == held and not part.exists()
        dst.checkout("big@main", tmp_path / "out")
        assert (tmp_path / "out" / "model.safetensors").read_bytes() == src_file.read_bytes()
    finally:
        dst.close()


def test_without_balancer_affinity_large_objects_still_arrive(
        source: tuple[Registry, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """Two server processes on one database and object folder but each with its own
    registry folder (so its own sessions), behind a balancer that alternates backends
    request by request: chunks land where the session is not, the sender is told
    (409 SessionMoved), and after that repeats the object goes whole in one request.
    (One chunk per request here, so that a 48 MiB tensor takes several requests.)"""
    monkeypatch.setattr("modelvc.client.uploads.BATCH_BYTES", CHUNK_BYTES)  # push and commit
    src, src_file = source
    big = _big(src)
    one = tmp_path / "one"
    Registry.init(one).close()
    config = json.loads((one / ".modelvc" / "config.json").read_text())
    config["meta"] = f"sqlite:///{(one / '.modelvc' / 'meta.db').resolve()}"
    config["objects"] = str((one / ".modelvc" / "objects").resolve())
    (tmp_path / "two" / ".modelvc" / "locks").mkdir(parents=True)
    (tmp_path / "two" / ".modelvc" / "config.json").write_text(json.dumps(config))
    token = grant_token(one, "wes", "writer", "big*")
    servers = [ServerProcess(one, tmp_path / "one.log").start(),
               ServerProcess(tmp_path / "two", tmp_path / "two.log").start()]
    turn = itertools.count()
    try:
        with Balancer([s.url for s in servers], lambda m, p: next(turn) % 2) as lb:
            end = HttpEnd(lb.url, token=token)
            try:
                result = transfer(local_end(src), end, ["big"], jobs=1)
            finally:
                end.close()
            assert result.versions == [src.resolve("big@main").id]
            codes = [(m, p.split("?")[0], st) for m, p, _, st in lb.log if m == "PUT"]
            assert ("PUT", f"/api/v1/uploads/{big.id}", 409) in codes
            assert ("PUT", f"/api/v1/objects/{big.id}", 200) in codes
            # A commit over HTTP falls back the same way (raw sessions, whole segment).
            other = tmp_path / "other" / "model.safetensors"
            other.parent.mkdir()
            save_file({"w": np.random.default_rng(1).standard_normal(
                (3072, 4096), dtype=np.float32)}, str(other))
            with RemoteRegistry(lb.url, token=token) as remote:
                v = remote.commit(other.parent, model="big2")
            paths = [(p.split("?")[0], st) for m, p, _, st in lb.log if m == "PUT"]
            assert any(p.startswith("/api/v1/uploads/") and st == 409 for p, st in paths)
    finally:
        for s in servers:
            s.stop()
    with Registry.open(one) as srv:
        assert srv.resolve("big2@main").id == v.id
        srv.checkout("big2@main", tmp_path / "out2")
        assert (tmp_path / "out2" / "model.safetensors").read_bytes() == other.read_bytes()
    _check_served(one, src_file, tmp_path)


def test_a_push_cut_by_an_s3_outage_keeps_the_received_object_and_sends_nothing_again(
        source: tuple[Registry, Path], tmp_path: Path) -> None:
    """Issue 11.5: the server's objects are on S3 (a real SeaweedFS) and S3 refuses the
    big object's write after the server received and verified all of it. The push
    fails; the spool is kept, so the resumed push sends none of the object's bytes
    again and the server stores it from the spool."""
    from tests.services.s3 import start_seaweed
    from tests.services.s3fault import WRITES, S3Fault

    src, src_file = source
    big = _big(src)
    s3 = start_seaweed(tmp_path / "s3")
    try:
        with S3Fault(s3.endpoint) as fault:
            repo = tmp_path / "served"
            Registry.init(repo, objects_url=(
                f"s3://{s3.bucket}/served?endpoint={fault.endpoint}&region=us-east-1"
                f"&access_key={s3.access_key}&secret_key={s3.secret_key}")).close()
            token = grant_token(repo, "wes", "writer", "big")
            server = ServerProcess(repo, tmp_path / "server.log").start()
            try:
                fault.refuse(WRITES, only=big.id[2:])  # the big object cannot be written
                with pytest.raises(StorageError):
                    _resume(server.url, token, src)
                assert fault.refusals() > 0
                [spool] = _spools(repo)
                assert spool.stat().st_size == big.stored_size  # received whole, kept
                fault.heal()
                end, result = _resume(server.url, token, src)
                assert result.versions == [src.resolve("big@main").id]
                assert end.sent[big.id] == 0 and result.bytes_resumed == big.stored_size
                # The server process took the object's bytes in once, over both attempts.
                done = [r for r in _log(server, "upload complete") if r["object"] == big.id]
                assert [r["received"] for r in done] == [big.stored_size]
                assert _spools(repo) == []
                _check_served(repo, src_file, tmp_path)
            finally:
                server.stop()
    finally:
        s3.stop()
