"""Write numpy arrays as a safetensors file (no torch or safetensors package needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_writer
from ..errors import UsageError

_CODES = {"bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "uint16": "U16",
          "float16": "F16", "int32": "I32", "uint32": "U32", "float32": "F32",
          "float64": "F64", "int64": "I64", "uint64": "U64"}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray],
                      metadata: dict[str, str] | None = None) -> None:
    """Tensors in name order, 8-byte aligned header, written atomically."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    arrays = []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        code = _CODES.get(a.dtype.name)
        if code is None:
            raise UsageError(f"tensor {name!r} has dtype {a.dtype}, which safetensors lacks")
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
