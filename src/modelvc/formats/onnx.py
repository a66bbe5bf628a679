"""ONNX (ModelProto) files: every initializer's raw_data becomes a tensor segment.

The protobuf wire format is walked directly (no onnx package). Only the path to tensors
is decoded: ModelProto.graph -> GraphProto.initializer (TensorProto), and graphs nested
in node attributes (If / Loop / Scan bodies) plus tensor-valued attributes (Constant).
Tensors in raw_data, or in packed float_data (FLOAT) / double_data (DOUBLE), whose
payload is the little-endian array itself, become tensor segments; varint-encoded
fields (int32_data, int64_data, ...) and everything else stay opaque bytes.
Models with external data (> 2 GB) keep only their in-file part here: the external
files are separate files of the snapshot.
"""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelvc.codec.dtypes import DTYPES
from modelvc.errors import InvalidModelFile
from modelvc.formats.plan import FilePlan, Segment, fill_gaps
from modelvc.formats.protowire import LEN, VARINT, WireError, as_int64, iter_fields
from modelvc.formats.protowire import packed_varints as _packed

# ONNX TensorProto.DataType -> safetensors dtype code (types with a raw byte layout
# that the tensor codecs understand; others stay bytes).
ONNX_DTYPES: dict[int, str] = {
    1: "F32", 2: "U8", 3: "I8", 4: "U16", 5: "I16", 6: "I32", 7: "I64",
    9: "BOOL", 10: "F16", 11: "F64", 12: "U32", 13: "U64", 16: "BF16",
}  # fmt: skip
ITEMSIZES = {code: DTYPES[code].itemsize for code in ONNX_DTYPES.values()}
_MAX_DEPTH = 32  # nested subgraphs; deeper nesting is kept as bytes
_HINT = "re-export the model (onnx.save) or check the download; external-data models are not split"


@dataclass
class _Walk:
    buf: memoryview
    path: Path
    tensors: list[Segment] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    external: int = 0

    def bad(self, what: str) -> InvalidModelFile:
        return InvalidModelFile(f"{self.path}: not a valid ONNX model: {what}", hint=_HINT)

    def text(self, start: int, length: int) -> str:
        try:
            return bytes(self.buf[start : start + length]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.bad(f"a name at byte {start} is not UTF-8") from exc

    def unique(self, name: str) -> str:
        base, n = name, 1
        while name in self.names:  # a repeated name would break delta matching
            n += 1
            name = f"dup{n}/{base}"
        self.names.add(name)
        return name

    def graph(self, start: int, length: int, prefix: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        for f in iter_fields(self.buf, start, start + length):
            if f.wire != LEN:
                continue
            if f.number == 5:  # initializer
                self.tensor(f.value, f.length, prefix, "")
            elif f.number == 1:  # node
                self.node(f.value, f.length, prefix, depth)

    def node(self, start: int, length: int, prefix: str, depth: int) -> None:
        fields = list(iter_fields(self.buf, start, start + length))
        node_name = next((self.text(f.value, f.length) for f in fields if f.number == 3), "")
        for f in fields:
            if f.number == 5 and f.wire == LEN:  # attribute
                self.attribute(f.value, f.length, f"{prefix}{node_name}/", depth)

    def attribute(self, start: int, length: int, prefix: str, depth: int) -> None:
        fields = list(iter_fields(self.buf, start, start + length))
        attr = next((self.text(f.value, f.length) for f in fields if f.number == 1), "")
        for f in fields:
            if f.wire != LEN:
                continue
            if f.number in (6, 11):  # g / graphs
                self.graph(f.value, f.length, f"{prefix}{attr}/", depth + 1)
            elif f.number in (5, 10):  # t / tensors
                self.tensor(f.value, f.length, prefix, attr)

    def tensor(self, start: int, length: int, prefix: str, fallback: str) -> None:
        dims: list[int] = []
        dtype_code, name = 0, fallback
        raw: tuple[int, int] | None = None
        packed: tuple[int, int, int] | None = None
        for f in iter_fields(self.buf, start, start + length):
            if f.number == 1 and f.wire == VARINT:
                dims.append(f.value)
            elif f.number == 1 and f.wire == LEN:  # packed repeated int64
                dims += _packed(self.buf, f.value, f.length)
            elif f.number == 2 and f.wire == VARINT:
                dtype_code = f.value
            elif f.number == 8 and f.wire == LEN:
                name = self.text(f.value, f.length)
            elif f.number == 9 and f.wire == LEN:
                raw = (f.value, f.length)
            elif f.number in (4, 10) and f.wire == LEN:  # packed float_data / double_data
                packed = (f.number, f.value, f.length)
            elif f.number == 14 and f.wire == VARINT and f.value == 1:
                self.external += 1
        dtype = ONNX_DTYPES.get(dtype_code)
        if raw is None and packed is not None and (packed[0], dtype) in ((4, "F32"), (10, "F64")):
            # A packed float/double field is the little-endian array itself, byte for
            # byte the same as raw_data would be (skl2onnx writes weights this way).
            raw = packed[1:]
        if raw is None or dtype is None:
            return
        shape = tuple(as_int64(d) for d in dims)
        full = f"{prefix}{name}" if name else f"{prefix}@{start}"
        if any(d < 0 for d in shape):
            raise self.bad(f"tensor {full!r} has a negative dimension {shape}")
        if math.prod(shape) * ITEMSIZES[dtype] != raw[1]:
            raise self.bad(f"tensor {full!r}: raw_data has {raw[1]} bytes, {dtype} {shape} "
                           f"needs {math.prod(shape) * ITEMSIZES[dtype]}")  # fmt: skip
        self.tensors.append(Segment(raw[0], raw[1], "tensor", self.unique(full), dtype, shape))


def plan_onnx(path: Path) -> FilePlan:
    size = path.stat().st_size
    if size == 0:
        raise InvalidModelFile(f"{path}: not a valid ONNX model: the file is empty", hint=_HINT)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
        buf = memoryview(m)
        try:
            walk = _Walk(buf, path)
            info = _walk_model(walk, size)
        finally:
            buf.release()
    info["tensor_count"] = len(walk.tensors)
    return FilePlan("onnx", size, fill_gaps(path, 0, size, walk.tensors), info)


def _walk_model(walk: _Walk, size: int) -> dict[str, Any]:
    try:
        fields = list(iter_fields(walk.buf, 0, size))
        info: dict[str, Any] = {"ir_version": None, "opset": {}}
        graphs = 0
        for f in fields:
            if f.number == 1 and f.wire == VARINT:
                info["ir_version"] = f.value
            elif f.number == 2 and f.wire == LEN:
                info["producer"] = walk.text(f.value, f.length)
            elif f.number == 8 and f.wire == LEN:  # OperatorSetIdProto: domain 1, version 2
                op = {g.number: g for g in iter_fields(walk.buf, f.value, f.value + f.length)}
                domain = walk.text(op[1].value, op[1].length) if 1 in op else ""
                info["opset"][domain] = op[2].value if 2 in op else None
            elif f.number == 7 and f.wire == LEN:
                graphs += 1
                walk.graph(f.value, f.length, "", 0)
    except WireError as exc:
        raise walk.bad(f"protobuf structure is broken ({exc})") from exc
    if info["ir_version"] is None or graphs != 1 or not info["opset"]:
        raise walk.bad("missing ir_version, graph or opset_import (truncated file?)")
    if walk.external:
        info["external_data_tensors"] = walk.external
    return info


def scalar_ints(data: bytes | memoryview) -> dict[str, int]:
    """The main graph's integer initializers of one element kept in int32_data or
    int64_data (not raw_data, so not tensor segments): name -> value. ONNX Runtime's
    quantizer writes a weight's zero point this way."""
    buf = memoryview(data)
    out: dict[str, int] = {}
    try:
        for f in iter_fields(buf, 0, len(buf)):
            if f.number != 7 or f.wire != LEN:
                continue
            for g in iter_fields(buf, f.value, f.value + f.length):
                if g.number == 5 and g.wire == LEN:
                    _scalar(buf, g.value, g.length, out)
    except WireError as exc:
        raise InvalidModelFile(f"not a valid ONNX model: {exc}", hint=_HINT) from exc
    return out


def _scalar(buf: memoryview, start: int, length: int, out: dict[str, int]) -> None:
    name, dims, values = None, [], []
    for f in iter_fields(buf, start, start + length):
        if f.number == 1:
            dims += [f.value] if f.wire == VARINT else _packed(buf, f.value, f.length)
        elif f.number == 8 and f.wire == LEN:
            name = bytes(buf[f.value:f.value + f.length]).decode("utf-8", "replace")
        elif f.number in (5, 7):  # int32_data / int64_data, plain or packed
            values += [f.value] if f.wire == VARINT else _packed(buf, f.value, f.length)
        elif f.number == 9:  # raw_data: a tensor segment, not ours
            return
    if name is not None and len(values) == 1 and math.prod(dims) == 1:
        out[name] = as_int64(values[0])
