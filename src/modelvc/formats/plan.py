"""The plan of a file: ordered segments that cover it exactly."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from modelvc.formats.chunking import MAX_SIZE, cdc_boundaries_mapped

SegmentKind = Literal["tensor", "bytes"]


@dataclass(frozen=True)
class Segment:
    """A byte range of a file; a "tensor" segment is one tensor's raw little-endian data."""

    offset: int
    length: int
    kind: SegmentKind
    name: str | None = None  # tensor name, unique within the file (for delta matching)
    dtype: str | None = None  # safetensors dtype code (F32, BF16, I64, ...)
    shape: tuple[int, ...] | None = None

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class FilePlan:
    """How a file splits into segments. Concatenating the segments rebuilds it exactly."""

    format: str  # "safetensors" | "onnx" | "pickle" | "json" | "text" | "binary"
    size: int
    segments: tuple[Segment, ...]  # sorted by offset, contiguous, covering [0, size)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def tensors(self) -> tuple[Segment, ...]:
        return tuple(s for s in self.segments if s.kind == "tensor")


def bytes_segments(path: Path, start: int, end: int) -> list[Segment]:
    """Opaque range [start, end) as "bytes" segments: one if small, CDC chunks if large
    (so a big non-tensor region still deduplicates across versions)."""
    if end <= start:
        return []
    if end - start <= MAX_SIZE:
        return [Segment(start, end - start, "bytes")]
    cuts = cdc_boundaries_mapped(path, start, end)
    return [Segment(a, b - a, "bytes") for a, b in zip([start, *cuts[:-1]], cuts, strict=True)]


def fill_gaps(path: Path, start: int, end: int, tensors: Iterable[Segment]) -> tuple[Segment, ...]:
    """Tensor segments (non-overlapping, inside [start, end)) in offset order, with
    "bytes" segments for every gap, covering [start, end) exactly. Zero-length tensors
    stay as zero-length segments so every tensor name is kept."""
    out: list[Segment] = []
    pos = start
    for seg in sorted(tensors, key=lambda s: (s.offset, s.length)):
        if seg.offset < pos:
            raise ValueError(f"overlapping segments at offset {seg.offset}")
        out.extend(bytes_segments(path, pos, seg.offset))
        out.append(seg)
        pos = seg.end
    if pos > end:
        raise ValueError(f"segment ends at {pos}, past {end}")
    out.extend(bytes_segments(path, pos, end))
    return tuple(out)


def check_contiguous(size: int, segments: Sequence[Segment]) -> str | None:
    """Why `segments` do not cover [0, size) in order, or None if they do."""
    pos = 0
    for i, seg in enumerate(segments):
        if seg.length < 0:
            return f"segment {i} has negative length {seg.length}"
        if seg.offset != pos:
            return f"segment {i} starts at {seg.offset}, expected {pos}"
        if seg.kind not in ("tensor", "bytes"):
            return f"segment {i} has unknown kind {seg.kind!r}"
        pos = seg.end
    if pos != size:
        return f"segments end at {pos}, but the file has {size} bytes"
    return None
