"""`cast`: F32 tensors to BF16 or F16, rounded to nearest even (what torch's .to() and
numpy's astype do), so modelvc stores the result as a cast delta against the source."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .files import edit_json, map_tensors
from .recipe import Applied, unknown
from .tensors import Tensor, as_float64

F16_MAX = 65504.0
# Half an ulp relative to |x| for normals; half the smallest subnormal below them.
BOUNDS = {"bf16": (2.0 ** -8, 2.0 ** -134), "fp16": (2.0 ** -11, 2.0 ** -25)}
TORCH_NAMES = {"bf16": "bfloat16", "fp16": "float16"}


def to_bf16(a: np.ndarray) -> np.ndarray:
    """float32 -> BF16 bit patterns (uint16), round to nearest even on the bits; NaN
    stays a quiet NaN of the same sign."""
    # In uint32 (4x faster than widening): the sum stays below 2**32 for every finite
    # value and infinity; only NaN patterns can wrap, and those are set below.
    bits = a.astype(np.float32, copy=False).view(np.uint32)
    out = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        out[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return out


class Cast:
    name = "cast"
    version = "1"
    deterministic = True
    tolerance = 0.0
    tools = ("numpy",)

    def params(self, raw: Mapping[str, str]) -> dict[str, Any]:
        unknown(raw, ("dtype",), self.name)
        dtype = raw.get("dtype", "bf16").lower()
        dtype = {"bfloat16": "bf16", "float16": "fp16", "f16": "fp16"}.get(dtype, dtype)
        if dtype not in BOUNDS:
            raise UsageError(f"cast: dtype {raw.get('dtype')!r} is not bf16 or fp16",
                             hint="--param dtype=bf16 (default) or --param dtype=fp16")
        return {"dtype": dtype}

    def apply(self, files_dir: Path, params: Mapping[str, Any], out_dir: Path) -> Applied:
        dtype = params["dtype"]
        per: dict[str, dict[str, Any]] = {}
        counts = {"cast": 0, "kept": 0, "bytes_in": 0, "bytes_out": 0}

        def one(name: str, t: Tensor) -> Tensor:
            counts["bytes_in"] += t.array.nbytes
            if t.code != "F32":
                counts["kept"] += 1
                counts["bytes_out"] += t.array.nbytes
                return t
            if dtype == "fp16":
                big = np.isfinite(t.array) & (np.abs(t.array) > F16_MAX)
                if big.any():
                    raise UsageError(f"cast: {name} holds {int(big.sum())} value(s) beyond "
                                     f"the F16 range (|x| > {F16_MAX})",
                                     hint="cast to bf16 instead (--param dtype=bf16)")
                new = Tensor("F16", t.array.astype(np.float16))
            else:
                new = Tensor("BF16", to_bf16(t.array))
            fin = np.isfinite(t.array)  # inf and NaN map to themselves
            err = np.abs(as_float64(new)[fin] - t.array.astype(np.float64)[fin])
            per[name] = {"max_abs_error": float(err.max()) if err.size else 0.0}
            counts["cast"] += 1
            counts["bytes_out"] += new.array.nbytes
            return new

        files = map_tensors(files_dir, out_dir, one)

        def set_dtype(doc: dict[str, Any]) -> None:
            if "torch_dtype" in doc or "model_type" in doc:  # a transformers config
                doc["torch_dtype"] = TORCH_NAMES[dtype]

        edit_json(out_dir / "config.json", set_dtype)
        rtol, atol = BOUNDS[dtype]
        worst = max((s["max_abs_error"] for s in per.values()), default=0.0)
        return Applied(stats={"files": files, "tensors_cast": counts["cast"],
                              "tensors_kept": counts["kept"], "bytes_in": counts["bytes_in"],
                              "bytes_out": counts["bytes_out"], "max_abs_error": worst,
                              "per_tensor": per},
                       rtol=rtol, atol=atol)
