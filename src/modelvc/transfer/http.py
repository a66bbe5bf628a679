"""Both ends of a transfer over HTTP: a client of the server's /api/v1/transfer and
/api/v1/objects routes (server/transfer.py). Authentication: a bearer token.

Large objects go up in chunks into the server's upload session for (this token's
subject, object, size) through modelvc.client.uploads, as commits do; downloads resume
with `Range: bytes=N-`."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from .. import errors
from ..client.transport import Transport, decode_error, error_code
from ..client.uploads import Session
from ..errors import UNREACHABLE_RESUME_HINT
from ..wire.frames import rechunk
from .protocol import ObjectEntry, RefInfo, VersionInfo, decode_pack, encode_pack

# Said by every request of a transfer that cannot reach the server, push or pull alike
# (an upload's own, the client's RESUME_HINT, is the same: either can come first when the
# server goes away mid-push, its packs and streams running in parallel).
HINT = UNREACHABLE_RESUME_HINT


class HttpEnd:
    """Source and Sink for a registry server at `url`. Thread-safe (httpx.Client is)."""

    def __init__(self, url: str, *, token: str | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._t = Transport(url, token=token, transport=transport, unreachable_hint=HINT)
        self.url = self._t.url
        self.sent: defaultdict[str, int] = defaultdict(int)  # object id -> bytes uploaded
        self.got: defaultdict[str, int] = defaultdict(int)  # object id -> bytes downloaded
        self._count = threading.Lock()
        self._legacy = False  # the server predates upload sessions

    @property
    def bytes_up(self) -> int:
        """Request bodies of object uploads (what went over the wire)."""
        return self._t.bytes_up

    @property
    def bytes_down(self) -> int:
        return self._t.bytes_down

    def close(self) -> None:
        self._t.close()

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self._t.request(method, path, **kw)

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._t.json(method, path, **kw)

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
        with self._t.stream("GET", f"/api/v1/objects/{oid}", headers=headers,
                            params={"model": model}, hint=HINT) as resp:
            skip = offset if resp.status_code == 200 else 0  # Range not honoured
            for chunk in resp.iter_bytes(1 << 20):
                self._count_down(len(chunk), oid)
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                if chunk:
                    yield chunk

    def _count_down(self, n: int, oid: str | None = None) -> None:
        self._t.count(down=n)
        if oid is not None:
            with self._count:
                self.got[oid] += n

    def _count_up(self, oid: str | None, n: int) -> None:
        self._t.count(up=n)
        if oid is not None:
            with self._count:
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

    def _session(self, model: str, oid: str, size: int) -> Session:
        return Session(self._t, oid, size, model=model, kind="object")

    def stream_offset(self, model: str, oid: str, size: int) -> int | None:
        if self._legacy:
            return 0
        session = self._session(model, oid, size)
        resp = self._t.request("GET", session.path, params=session.params, check=False)
        if resp.status_code in (404, 405) and error_code(resp) is None:
            self._legacy = True  # a server without upload sessions: whole objects
            return 0
        if resp.status_code >= 400:
            raise decode_error(resp)
        info = resp.json()
        return None if info["stored"] else int(info["offset"])

    def write_stream(self, model: str, oid: str, chunks: Iterable[bytes], *,
                     offset: int = 0, size: int,
                     progress: Callable[[int], None] | None = None) -> None:
        """Frames of CHUNK_BYTES into the server's upload session, up to BATCH_BYTES
        per request (see Sink and modelvc.client.uploads)."""
        if self._legacy:
            self.write_whole(model, oid, chunks, size)
            if progress:
                progress(size)
            return
        pos = offset

        def sent(k: int) -> None:
            nonlocal pos
            pos += k
            self._count_up(oid, k)
            if progress:
                progress(pos)

        self._session(model, oid, size).send(offset, rechunk(iter(chunks)), sent)

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
