"""What the two ends of a transfer say to each other, and the pack wire format.

A transfer runs between a *source* (has the versions) and a *sink* (receives them).
Both may be a local registry or a server; the engine (engine.py) only speaks these
two protocols, so push, pull, clone and server-to-server are one algorithm.

Pack format (many small stored objects in one request/response body):

    b"MVP1" | repeated: u16 id length | id (ascii hex) | u64 length | stored bytes

Objects too large for a pack stream into an upload session on the sink (sessions.py):
the engine asks `stream_offset` how much the sink holds, reads the rest from the source
(`read_stream(offset=)`) and hands it to `write_stream`, so an interrupted transfer of a
multi-GB object resumes within the object.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ..errors import CorruptObject
from ..objects.base import check_key

PACK_MAGIC = b"MVP1"
_HEAD = struct.Struct("<H")
_LEN = struct.Struct("<Q")


@dataclass(frozen=True)
class RefInfo:
    model: str
    name: str
    kind: str  # branch | channel | tag
    version_id: str | None


@dataclass(frozen=True)
class VersionInfo:
    id: str
    model: str
    number: int
    parents: tuple[str, ...]


@dataclass(frozen=True)
class ObjectEntry:
    id: str
    size: int  # stored (encoded) bytes: what travels
    depth: int  # delta links below it (0: decodes on its own)


class Source(Protocol):
    def models(self) -> list[str]: ...
    def refs(self, model: str) -> list[RefInfo]: ...
    def ancestry(self, model: str, version_ids: list[str]) -> list[VersionInfo]:
        """The live versions and all their live ancestors, oldest first."""
        ...
    def closure(self, model: str, version_ids: list[str]) -> list[ObjectEntry]:
        """Every object the versions need: manifests, listed objects, delta chains."""
        ...
    def read_pack(self, model: str, ids: list[str]) -> list[tuple[str, bytes]]: ...
    def read_stream(self, model: str, oid: str, offset: int = 0) -> Iterator[bytes]:
        """The stored bytes of OID from OFFSET on."""
        ...


class Sink(Protocol):
    def refs(self, model: str) -> list[RefInfo]: ...
    def has_versions(self, model: str, ids: list[str]) -> set[str]: ...
    def has_objects(self, model: str, ids: list[str]) -> set[str]: ...
    def write_pack(self, model: str, items: list[tuple[str, bytes]]) -> None:
        """Verify every object (decode + BLAKE3) and store it; refs of deltas must be
        present already or earlier in the same pack."""
        ...
    def stream_offset(self, model: str, oid: str, size: int) -> int | None:
        """How many bytes of OID's SIZE stored bytes the sink's upload session holds
        (0: none); None when the sink has the object already."""
        ...
    def write_stream(self, model: str, oid: str, chunks: Iterable[bytes], *,
                     offset: int = 0, size: int,
                     progress: Callable[[int], None] | None = None) -> None:
        """Append CHUNKS (the stored bytes from OFFSET on) to OID's upload session and,
        once all SIZE bytes are there, verify and store the object. `progress` gets the
        number of bytes the sink holds after each chunk. SessionMoved: the session does
        not hold OFFSET bytes (ask stream_offset again); CorruptObject: a chunk or the
        whole object failed its check (the session was discarded on the latter)."""
        ...
    def write_whole(self, model: str, oid: str, chunks: Iterable[bytes], size: int) -> None:
        """OID's SIZE stored bytes in one go (no session: nothing to resume); for a
        session that keeps moving (a balancer without affinity)."""
        ...
    def record_version(self, model: str, version_id: str) -> int:
        """Record a version whose objects are all present; returns its number here."""
        ...
    def update_ref(self, ref: RefInfo, *, expected: str | None, force: bool) -> str:
        """Move the ref by compare-and-swap from `expected`; returns what was done."""
        ...


def encode_pack(items: Iterable[tuple[str, bytes]]) -> bytes:
    out = [PACK_MAGIC]
    for oid, data in items:
        key = check_key(oid).encode()
        out += [_HEAD.pack(len(key)), key, _LEN.pack(len(data)), data]
    return b"".join(out)


def decode_pack(body: bytes) -> Iterator[tuple[str, bytes]]:
    if body[:4] != PACK_MAGIC:
        raise CorruptObject("not an object pack (bad magic)")
    mv = memoryview(body)
    pos = 4
    try:
        while pos < len(body):
            (n,) = _HEAD.unpack_from(mv, pos)
            oid = bytes(mv[pos + 2 : pos + 2 + n]).decode("ascii")
            pos += 2 + n
            (size,) = _LEN.unpack_from(mv, pos)
            pos += 8
            if pos + size > len(body):
                raise CorruptObject("object pack is truncated")
            yield check_key(oid), bytes(mv[pos : pos + size])
            pos += size
    except (struct.error, UnicodeDecodeError) as exc:
        raise CorruptObject(f"malformed object pack: {exc}") from exc
