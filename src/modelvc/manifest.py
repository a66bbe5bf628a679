"""A version's manifest: its files as ordered segments, its lineage; its id is its digest.

The manifest is canonical JSON (sorted keys, no spaces), so the same content and
lineage always give the same bytes and the same id. It holds what a version *is*
(file bytes, via tensor and blob ids), never how objects are encoded: re-encoding an
object (delta re-basing) changes nothing here, and signatures over the id stay valid.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import blake3

from .canonical import canonical_json
from .errors import CorruptObject
from .records import FileStorage

__all__ = ["FileEntry", "Manifest", "SegmentRef", "canonical_json", "file_storage"]

MANIFEST_FORMAT = "modelvc.manifest/1"


@dataclass(frozen=True)
class SegmentRef:
    """One piece of a file: a tensor object or a blob object, `size` raw bytes."""

    id: str
    size: int
    tensor: str | None = None  # tensor name (None for byte segments)
    dtype: str | None = None
    shape: tuple[int, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "n": self.size}
        if self.tensor is not None:
            out.update(t=self.tensor, dtype=self.dtype, shape=list(self.shape or ()))
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SegmentRef:
        if "t" in d:
            return cls(d["id"], int(d["n"]), d["t"], d["dtype"], tuple(int(x) for x in d["shape"]))
        return cls(d["id"], int(d["n"]))


@dataclass(frozen=True)
class FileEntry:
    path: str  # posix, relative to the version root
    size: int
    sha256: str
    format: str
    segments: tuple[SegmentRef, ...]
    info: dict[str, Any] = field(default_factory=dict)

    def tensors(self) -> Iterator[SegmentRef]:
        return (s for s in self.segments if s.tensor is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "format": self.format,
            "info": self.info,
            "segments": [s.to_json() for s in self.segments],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FileEntry:
        segs = tuple(SegmentRef.from_json(s) for s in d["segments"])
        return cls(d["path"], int(d["size"]), d["sha256"], d["format"], segs, d.get("info", {}))


@dataclass(frozen=True)
class Manifest:
    model: str
    files: tuple[FileEntry, ...]
    parents: tuple[str, ...]
    created_at: str  # ISO 8601 UTC
    author: str
    message: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    kind: str = "file"  # "file" when the committed path was one file, else "folder"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "model": self.model,
            "kind": self.kind,
            "files": [f.to_json() for f in self.files],
            "parents": list(self.parents),
            "created_at": self.created_at,
            "author": self.author,
            "message": self.message,
            "params": self.params,
            "metrics": self.metrics,
            "lineage": self.lineage,
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @property
    def id(self) -> str:
        return blake3.blake3(self.to_bytes()).hexdigest()

    @property
    def raw_size(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path: str) -> FileEntry | None:
        return next((f for f in self.files if f.path == path), None)

    def tensor_index(self) -> dict[tuple[str, str], SegmentRef]:
        """(file path, tensor name) -> segment, for delta matching and diffs."""
        return {(f.path, s.tensor): s for f in self.files for s in f.segments if s.tensor}

    def object_ids(self) -> set[str]:
        return {s.id for f in self.files for s in f.segments}

    @classmethod
    def from_bytes(cls, data: bytes, *, expect_id: str | None = None) -> Manifest:
        if expect_id is not None and blake3.blake3(data).hexdigest() != expect_id:
            raise CorruptObject(f"manifest {expect_id[:12]} does not match its id")
        try:
            d = json.loads(data)
            if d.get("format") != MANIFEST_FORMAT:
                raise CorruptObject(f"unknown manifest format {d.get('format')!r}")
            return cls(
                model=d["model"],
                files=tuple(FileEntry.from_json(f) for f in d["files"]),
                parents=tuple(d["parents"]),
                created_at=d["created_at"],
                author=d["author"],
                message=d["message"],
                params=d["params"],
                metrics=d["metrics"],
                lineage=d["lineage"],
                kind=d.get("kind", "folder"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptObject(f"malformed manifest: {exc}") from exc


# ---- stored bytes per file (RegistryAPI.storage): segments joined to object rows
class _Obj(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def codec(self) -> str: ...
    @property
    def stored_size(self) -> int: ...


def file_storage(manifest: Manifest, objects: Iterable[_Obj]) -> list[FileStorage]:
    """A segment repeated within a file (tied weights) counts once; one shared by two
    files counts in each. An object without a row (absent) counts 0 bytes."""
    rows = {o.id: o for o in objects}
    out = []
    for f in manifest.files:
        ids = dict.fromkeys(s.id for s in f.segments)
        codecs: dict[str, int] = {}
        for i in ids:
            o = rows.get(i)
            if o is not None:
                codecs[o.codec] = codecs.get(o.codec, 0) + o.stored_size
        out.append(FileStorage(path=f.path, raw_size=f.size, stored_size=sum(codecs.values()),
                               objects=len(ids), codecs=dict(sorted(codecs.items()))))
    return out
