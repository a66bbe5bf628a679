"""Both ends of a transfer over HTTP: a client of the server's /api/v1/transfer and
/api/v1/objects routes (server/transfer.py). Authentication: a bearer token.

Large objects go up in chunks (frames with their BLAKE3) into the server's upload
session for (this token's subject, object, size), a batch of them per request;
downloads resume with `Range: bytes=N-`."""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

import httpx

from .. import errors
from ..errors import ModelvcError, StorageError
from .protocol import ObjectEntry, RefInfo, VersionInfo, decode_pack, encode_pack
from .sessions import (
    BATCH_BYTES,
    FRAMES_TYPE,
    ChunkRefused,
    SessionMoved,
    framed_size,
    frames,
    rechunk,
)

TIMEOUT = httpx.Timeout(300.0, connect=10.0)


class HttpEnd:
    """Source and Sink for a registry server at `url`. Thread-safe (httpx.Client is)."""

    def __init__(self, url: str, *, token: str | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        token = token or os.environ.get("MODELVC_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.bytes_up = 0  # request bodies of object uploads (what went over the wire)
        self.bytes_down = 0
        self.sent: defaultdict[str, int] = defaultdict(int)  # object id -> bytes uploaded
        self.got: defaultdict[str, int] = defaultdict(int)  # object id -> bytes downloaded
        self._count = threading.Lock()
        self._legacy = False  # the server predates upload sessions
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT,
                                    transport=transport,
                                    limits=httpx.Limits(max_connections=16))

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self._client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise StorageError(f"cannot reach the registry at {self.url}: {exc}",
                               hint="is the server up? the transfer resumes when rerun") from exc
        if resp.status_code >= 400:
            _raise(resp)
        return resp

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._call(method, path, **kw).json()

    # ---- source
    def models(self) -> list[str]:
        return list(self._json("GET", "/api/v1/transfer/models")["models"])

    def refs(self, model: str) -> list[RefInfo]:
        rows = self._json("GET", "/api/v1/transfer/refs", params={"model": model})["refs"]
        return [RefInfo(model, r["name"], r["kind"], r["version_id"]) for r in rows]

    def ancestry(self, model: str, version_ids: list[str]) -> list[VersionInfo]:
        body = {"model": model, "ids": version_ids}
        rows = self._json("POST", "/api/v1/transfer/ancestry", json=body)["versions"]
        return [VersionInfo(r["id"], r["model"], r["number"], tuple(r["parents"])) for r in rows]

    def closure(self, model: str, version_ids: list[str]) -> list[ObjectEntry]:
        body = {"model": model, "ids": version_ids}
        rows = self._json("POST", "/api/v1/transfer/closure", json=body)["objects"]
        return [ObjectEntry(r["id"], r["size"], r["depth"]) for r in rows]

    def read_pack(self, model: str, ids: list[str]) -> list[tuple[str, bytes]]:
        resp = self._call("POST", "/api/v1/objects/fetch", json={"model": model, "ids": ids})
        self._count_down(len(resp.content))
        items = list(decode_pack(resp.content))
        with self._count:
            for oid, data in items:
                self.got[oid] += len(data)
        if [oid for oid, _ in items] != ids:
            raise errors.CorruptObject("the server answered a pack with other objects")
        return items

    def read_stream(self, model: str, oid: str, offset: int = 0) -> Iterator[bytes]:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with self._client.stream("GET", f"/api/v1/objects/{oid}", headers=headers,
                                     params={"model": model}) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _raise(resp)
                skip = offset if resp.status_code == 200 else 0  # Range not honoured
                for chunk in resp.iter_bytes(1 << 20):
                    self._count_down(len(chunk), oid)
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                    if chunk:
                        yield chunk
        except httpx.HTTPError as exc:
            raise StorageError(f"download of {oid[:12]} from {self.url} failed: {exc}",
                               hint="run the transfer again: it resumes from there") from exc

    def _count_down(self, n: int, oid: str | None = None) -> None:
        with self._count:
            self.bytes_down += n
            if oid is not None:
                self.got[oid] += n

    def _count_up(self, oid: str | None, n: int) -> None:
        with self._count:
            self.bytes_up += n
            if oid is not None:
                self.sent[oid] += n

    # ---- sink
    def has_versions(self, model: str, ids: list[str]) -> set[str]:
        body = {"model": model, "ids": ids}
        return set(self._json("POST", "/api/v1/transfer/have-versions", json=body)["have"])

    def has_objects(self, model: str, ids: list[str]) -> set[str]:
        body = {"model": model, "ids": ids}
        return set(self._json("POST", "/api/v1/objects/have", json=body)["have"])

    def write_pack(self, model: str, items: list[tuple[str, bytes]]) -> None:
        body = encode_pack(items)
        self._count_up(None, len(body))
        with self._count:
            for oid, data in items:
                self.sent[oid] += len(data)
        self._call("POST", "/api/v1/objects/pack", params={"model": model}, content=body,
                   headers={"Content-Type": "application/octet-stream"})

    def stream_offset(self, model: str, oid: str, size: int) -> int | None:
        if self._legacy:
            return 0
        try:
            resp = self._client.get(f"/api/v1/objects/{oid}/upload",
                                    params={"model": model, "size": size})
        except httpx.HTTPError as exc:
            raise StorageError(f"cannot reach the registry at {self.url}: {exc}",
                               hint="is the server up? the transfer resumes when rerun"
                               ) from exc
        if resp.status_code in (404, 405) and _error_name(resp) is None:
            self._legacy = True  # a server without upload sessions: whole objects
            return 0
        if resp.status_code >= 400:
            _raise(resp)
        info = resp.json()
        return None if info["stored"] else int(info["offset"])

    def write_stream(self, model: str, oid: str, chunks: Iterable[bytes], *,
                     offset: int = 0, size: int,
                     progress: Callable[[int], None] | None = None) -> None:
        """Frames of CHUNK_BYTES into the server's upload session, up to BATCH_BYTES
        per request (see Sink and sessions.py)."""
        if self._legacy:
            self.write_whole(model, oid, chunks, size)
            if progress:
                progress(size)
            return
        pieces = rechunk(iter(chunks))
        pos = offset
        while True:
            n = min(size - pos, BATCH_BYTES)
            start, went = pos, 0

            def sent(k: int, start: int = start) -> None:
                nonlocal went
                went += k
                self._count_up(oid, k)
                if progress:
                    progress(start + went)

            pos, complete = self._put_frames(model, oid, size, pos,
                                             frames(pieces, n, sent), n)
            if complete:
                return
            if pos != start + n:  # the server holds other than what it was sent
                raise SessionMoved(f"the server's upload session of {oid[:12]} holds {pos}")

    def _put_frames(self, model: str, oid: str, size: int, offset: int,
                    body: Iterator[bytes], n: int) -> tuple[int, bool]:
        """One request: N payload bytes as frames; (what the server holds, complete)."""
        params: dict[str, str | int] = {"model": model, "size": size, "offset": offset}
        length = framed_size(n)
        headers = {"Content-Type": FRAMES_TYPE, "Content-Length": str(length)}
        self._count_up(None, length - n)  # frame heads (payload is counted as it goes)
        try:
            resp = self._client.put(f"/api/v1/objects/{oid}/upload", params=params,
                                    content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise StorageError(f"upload of {oid[:12]} to {self.url} failed after byte "
                               f"{offset}: {exc}",
                               hint="run the transfer again: it resumes from what the "
                                    "server holds") from exc
        if resp.status_code >= 400:
            name = _error_name(resp)
            if name == "SessionMoved":
                raise SessionMoved(f"the server's upload session of {oid[:12]} moved")
            if name == "ChunkRefused":
                raise ChunkRefused(f"the server refused a chunk of {oid[:12]} "
                                   "(damaged in transit)")
            _raise(resp)
        got = resp.json()
        return int(got["offset"]), bool(got["complete"])

    def write_whole(self, model: str, oid: str, chunks: Iterable[bytes], size: int) -> None:
        """One streamed PUT of the whole object (with its Content-Length, which some
        proxies need: httpx then does not send it chunked)."""
        def counted() -> Iterator[bytes]:
            for c in chunks:
                self._count_up(oid, len(c))
                yield c

        self._call("PUT", f"/api/v1/objects/{oid}", params={"model": model},
                   content=counted(), headers={"Content-Type": "application/octet-stream",
                                               "Content-Length": str(size)})

    def record_version(self, model: str, version_id: str) -> int:
        body = {"model": model, "id": version_id}
        return int(self._json("POST", "/api/v1/transfer/versions", json=body)["number"])

    def update_ref(self, ref: RefInfo, *, expected: str | None, force: bool) -> str:
        body = {"model": ref.model, "name": ref.name, "kind": ref.kind,
                "version_id": ref.version_id, "expected": expected, "force": force}
        return str(self._json("POST", "/api/v1/transfer/refs", json=body)["result"])


def _error_name(resp: httpx.Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    name = body.get("error") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None


def _raise(resp: httpx.Response) -> NoReturn:
    """The server's error body -> the same class of the modelvc error tree."""
    try:
        body = resp.json()
    except ValueError:
        body = {}
    name = body.get("error") if isinstance(body, dict) else None
    cls = getattr(errors, name, None) if isinstance(name, str) else None
    message = body.get("message") or body.get("detail") or resp.text[:200]
    if not (isinstance(cls, type) and issubclass(cls, ModelvcError)):
        cls = _by_status(resp.status_code)
    raise cls(f"{message}", hint=body.get("hint"))


def _by_status(status: int) -> type[ModelvcError]:
    table: dict[int, type[ModelvcError]] = {
        400: errors.UsageError, 401: errors.PermissionDenied, 403: errors.PermissionDenied,
        404: errors.NotFound, 409: errors.Conflict, 507: errors.StorageError,
    }
    return table.get(status, StorageError if status >= 500 else ModelvcError)
