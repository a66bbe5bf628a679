"""Files held in memory, planned as plan_file would plan them on disk: a commit straight
from a training loop (`commit_files`), with no file written and read back.

A value is bytes (a config, a tokenizer, an ONNX or safetensors file made in memory)
or a state dict (name -> torch tensor or numpy array), laid out as a safetensors file:
tensors in name order, so the same state gives the same bytes. Tensors are copied once
into immutable bytes (the snapshot: training may go on changing them in place, and the
encoder keeps immutable blocks as the next checkpoint's reference). Never pickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from modelvc.errors import UsageError
from modelvc.formats.chunking import MAX_SIZE, cdc_boundaries
from modelvc.formats.detect import PICKLE_EXTS, _content_format, _looks_pickled
from modelvc.formats.plan import FilePlan, Segment
from modelvc.formats.safetensors import plan_safetensors

CODES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
         "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
         "bool": "BOOL"}


@dataclass(frozen=True)
class MemFile:
    """A file's path in the version, its plan, and each segment's bytes (plan order)."""

    rel: str
    plan: FilePlan
    pieces: tuple[memoryview, ...]

    def read(self, i: int, offset: int, n: int) -> memoryview:
        """N bytes of segment I from OFFSET."""
        return self.pieces[i][offset:offset + n]


def mem_files(files: Mapping[str, Any]) -> list[MemFile]:
    """FILES (path in the version -> bytes or a state dict) as MemFiles, sorted by path."""
    if not files:
        raise UsageError("a commit needs at least one file")
    out = []
    for rel in sorted(files):
        _check_rel(rel)
        body = files[rel]
        if isinstance(body, bytes | bytearray | memoryview):
            out.append(_bytes_file(rel, bytes(body) if isinstance(body, bytearray) else body))
        elif isinstance(body, Mapping):
            out.append(state_file(rel, body))
        else:
            raise UsageError(f"{rel}: {type(body).__name__} is neither bytes nor a state dict",
                             hint="give bytes, or a mapping of tensor names to tensors")
    return out


def _check_rel(rel: str) -> None:
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel or str(p) != rel:
        raise UsageError(f"{rel!r} is not a relative path inside the version",
                         hint='use forward slashes, e.g. "model.safetensors" or "sub/x.json"')


def state_file(rel: str, state: Mapping[str, Any],
               metadata: Mapping[str, str] | None = None) -> MemFile:
    """STATE as a safetensors file: one header segment, then one tensor segment each."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    frozen = state if isinstance(state, FrozenState) else snapshot(state)
    tensors: list[tuple[str, str, tuple[int, ...], bytes]] = []
    offset = 0
    for name in sorted(frozen):
        code, shape, data = frozen[name]
        header[name] = {"dtype": code, "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}
        tensors.append((name, code, shape, data))
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    first = len(head).to_bytes(8, "little") + head
    segs, pieces, pos = [Segment(0, len(first), "bytes")], [memoryview(first)], len(first)
    for name, code, shape, data in tensors:
        segs.append(Segment(pos, len(data), "tensor", name, code, shape))
        pieces.append(memoryview(data))
        pos += len(data)
    info: dict[str, Any] = {"metadata": header.get("__metadata__"), "header_size": len(first),
                            "tensor_count": len(tensors)}
    return MemFile(rel, FilePlan("safetensors", pos, tuple(segs), info), tuple(pieces))


class FrozenState(dict[str, tuple[str, tuple[int, ...], bytes]]):
    """A state dict's snapshot: name -> (safetensors dtype code, shape, bytes)."""


def snapshot(state: Mapping[str, Any]) -> FrozenState:
    """Copy STATE's tensors into immutable bytes (training may change them after)."""
    if isinstance(state, FrozenState):
        return state
    out = FrozenState()
    for name in state:
        if not isinstance(name, str):
            raise UsageError(f"tensor name {name!r} is not a string")
        code, arr = _array(name, state[name])
        out[name] = (code, tuple(arr.shape), arr.tobytes())
    return out


def tensor_bytes(state: Mapping[str, Any], metadata: Mapping[str, str] | None = None
                 ) -> bytes:
    """A state dict as the bytes of a safetensors file (what state_file plans)."""
    return b"".join(state_file("x.safetensors", state, metadata).pieces)


def _array(name: str, t: Any) -> tuple[str, np.ndarray]:
    """(safetensors dtype code, little-endian C-contiguous array) of one tensor."""
    if hasattr(t, "detach"):  # a torch tensor: no torch import needed to read it
        t = t.detach().cpu()
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype == "bfloat16":  # numpy has no bfloat16: its 16-bit patterns
            import torch

            arr = t.contiguous().view(torch.int16).numpy()
        elif dtype in CODES:
            arr = t.contiguous().numpy()
        else:
            arr = None
    else:
        arr = np.asarray(t)
        dtype = str(arr.dtype)
    code = CODES.get(dtype)
    if code is None or arr is None:
        raise UsageError(f"tensor {name!r} has dtype {dtype}, which safetensors cannot hold",
                         hint="convert it (e.g. .float()) before committing")
    arr = np.ascontiguousarray(arr)
    return code, arr.astype(arr.dtype.newbyteorder("<"), copy=False)


def _bytes_file(rel: str, data: bytes | memoryview) -> MemFile:
    ext = PurePosixPath(rel).suffix.lower()
    view = memoryview(data).cast("B")
    if ext in (".safetensors", ".onnx"):
        plan = _plan_by_parser(view, ext)
    else:
        size = len(view)
        if size <= MAX_SIZE:
            segs: tuple[Segment, ...] = (Segment(0, size, "bytes"),)
        else:
            cuts = cdc_boundaries(view)
            segs = tuple(Segment(a, b - a, "bytes") for a, b in zip([0, *cuts[:-1]], cuts,
                                                                      strict=True))
        head = bytes(view[:MAX_SIZE if size <= MAX_SIZE else 8])
        info: dict[str, Any] = {}
        if ext in PICKLE_EXTS and (ext != ".bin" or _looks_pickled(head)):
            fmt = "pickle"
            info["container"] = "zip" if head.startswith(b"PK\x03\x04") else "pickle"
        elif size <= MAX_SIZE:
            fmt = _content_format(head, ext)
        else:
            fmt = "binary"
        plan = FilePlan(fmt, size, segs, info)
    return MemFile(rel, plan, tuple(view[s.offset:s.end] for s in plan.segments))


def _plan_by_parser(view: memoryview, ext: str) -> FilePlan:
    """A safetensors or ONNX file's plan by the same parser as on disk, reading it from
    anonymous memory (memfd: nothing touches a file system). A safetensors file's
    planner reads its header only: the rest of the memfd stays a hole (no copy of the
    tensors), unless a large gap between tensors needs its bytes for CDC cuts."""
    fd = os.memfd_create("modelvc-commit")
    try:
        path = Path(f"/proc/self/fd/{fd}")
        if ext == ".safetensors" and len(view) >= 8:
            head = min(len(view), 8 + int.from_bytes(view[:8], "little"))
            os.ftruncate(fd, len(view))
            _write_all(fd, view[:head])
            plan = plan_safetensors(path)
            if not _large_gap(plan, head):
                return plan
        _write_all(fd, view)
        if ext == ".safetensors":
            return plan_safetensors(path)
        from modelvc.formats.onnx import plan_onnx

        return plan_onnx(path)
    finally:
        os.close(fd)


def _write_all(fd: int, view: memoryview) -> None:
    pos = 0
    while pos < len(view):
        pos += os.pwrite(fd, view[pos:], pos)


def _large_gap(plan: FilePlan, head: int) -> bool:
    """Whether PLAN holds a run of non-tensor bytes past the header larger than
    MAX_SIZE (cut by content, so planned from the hole's zeros: plan it again)."""
    run = 0
    for s in plan.segments:
        if s.kind == "tensor" or s.end <= head:
            run = 0
        else:
            run += s.length
            if run > MAX_SIZE:
                return True
    return False
