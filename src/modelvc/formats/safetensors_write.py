"""Write numpy arrays as a safetensors file (no torch or safetensors package needed)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..atomic import atomic_writer
from ..errors import UsageError

_CODES = {"bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "uint16": "U16",
          "float16": "F16", "int32": "I32", "uint32": "U32", "float32": "F32",
          "float64": "F64", "int64": "I64", "uint64": "U64"}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray],
                      metadata: dict[str, str] | None = None) -> None:
    """Numpy arrays as a safetensors file, each with its dtype's code."""
    coded = {}
    for name in sorted(tensors):
        code = _CODES.get(np.asarray(tensors[name]).dtype.name)
        if code is None:
            raise UsageError(f"tensor {name!r} has dtype {tensors[name].dtype}, which "
                             "safetensors lacks")
        coded[name] = (code, tensors[name])
    write_coded(path, coded, metadata)


def write_coded(path: Path, tensors: Mapping[str, tuple[str, np.ndarray]],
                metadata: Mapping[str, str] | None = None) -> None:
    """(safetensors dtype code, array) by name: tensors in name order, 8-byte aligned
    header, written atomically; the same bytes for the same tensors (a deterministic
    recipe's output is compared byte for byte)."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    arrays = []
    for name in sorted(tensors):
        code, array = tensors[name]
        a = np.ascontiguousarray(array).reshape(np.shape(array))  # 0-d stays 0-d
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": code, "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with atomic_writer(Path(path), mode=0o644) as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for a in arrays:
            f.write(a.tobytes())
