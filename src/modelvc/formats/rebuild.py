"""Read a planned file back segment by segment (the inverse of a plan)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from modelvc.errors import Corrupt, InvalidModelFile
from modelvc.formats.plan import FilePlan, Segment, check_contiguous


def verify_plan(plan: FilePlan) -> None:
    """Raise Corrupt unless the segments are in order, contiguous and cover the file."""
    problem = check_contiguous(plan.size, plan.segments)
    if problem is not None:
        raise Corrupt(f"invalid file plan ({plan.format}, {plan.size} bytes): {problem}")
    names = [s.name for s in plan.segments if s.kind == "tensor"]
    if len(set(names)) != len(names) or None in names:
        raise Corrupt(f"invalid file plan ({plan.format}): tensor names missing or repeated")


def iter_segment_bytes(path: Path, plan: FilePlan) -> Iterator[tuple[Segment, memoryview]]:
    """Each segment with its bytes, read in order with one file read per segment.

    Memory stays bounded by the largest segment (a tensor, or a CDC chunk of at most
    4 MiB; a safetensors header is at most 100 MB), never the whole file. Each yielded
    buffer is fresh, so callers may keep it.
    """
    verify_plan(plan)
    with open(path, "rb") as f:
        actual = f.seek(0, 2)
        if actual != plan.size:
            raise InvalidModelFile(
                f"{path}: has {actual} bytes but was planned with {plan.size}",
                hint="the file changed while being read: retry when it is no longer written",
            )
        f.seek(0)
        for seg in plan.segments:
            buf = bytearray(seg.length)
            if f.readinto(buf) != seg.length:
                raise InvalidModelFile(f"{path}: truncated while reading at {seg.offset}")
            yield seg, memoryview(buf)
