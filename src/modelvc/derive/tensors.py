"""Safetensors files as numpy arrays, BF16 included (held as its uint16 bit patterns:
numpy has no bfloat16), so recipes need neither torch nor the safetensors package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codec.dtypes import numpy_dtype
from ..errors import UsageError
from ..formats.safetensors import read_safetensors_header
from ..formats.safetensors_write import write_coded


@dataclass
class Tensor:
    code: str  # safetensors dtype code: "F32", "BF16", ...
    array: np.ndarray  # BF16: uint16 bit patterns


def read(path: Path) -> tuple[dict[str, Tensor], dict[str, str] | None]:
    """Every tensor of a safetensors file (copied into memory) and its metadata."""
    header = read_safetensors_header(path)
    with path.open("rb") as f:
        start = 8 + int.from_bytes(f.read(8), "little")
    data = np.fromfile(path, dtype=np.uint8, offset=start)
    out: dict[str, Tensor] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        code = entry["dtype"]
        dt = np.dtype("<u2") if code == "BF16" else numpy_dtype(code)
        if dt is None:
            raise UsageError(f"{path.name}: tensor {name!r} has dtype {code}, which recipes "
                             "cannot read", hint="derive from a model in F32/F16/BF16/ints")
        lo, hi = entry["data_offsets"]
        out[name] = Tensor(code, data[lo:hi].view(dt).reshape(entry["shape"]).copy())
    return out, header.get("__metadata__")


def write(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None
          ) -> None:
    """TENSORS as a safetensors file, atomically, the same bytes for the same tensors."""
    write_coded(path, {n: (t.code, t.array) for n, t in tensors.items()}, metadata)


def as_float64(t: Tensor) -> np.ndarray:
    """The values of a floating tensor, exactly, in float64 (BF16 widened by bits)."""
    if t.code == "BF16":
        return (t.array.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return t.array.astype(np.float64)
