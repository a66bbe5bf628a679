"""Seeded sample inputs on which a recipe compares its output model with the source
(the same seed every run: the recorded output error can be reproduced exactly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SEED = 0
ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
              "tensor(float16)": np.float16, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def onnx_session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_inputs(sess: Any, batch: int = 8) -> dict[str, np.ndarray] | None:
    """Random inputs shaped from the session's signature (dynamic dimensions = batch for
    the first, 16 for others; floats standard normal, integers 0/1); None when an input
    has a type no sample can be made for."""
    rng = np.random.default_rng(SEED)
    feed: dict[str, np.ndarray] = {}
    for arg in sess.get_inputs():
        dtype = ORT_DTYPES.get(arg.type)
        if dtype is None:
            return None
        shape = [d if isinstance(d, int) and d > 0 else (batch if i == 0 else 16)
                 for i, d in enumerate(arg.shape or [])]
        feed[arg.name] = (rng.standard_normal(shape).astype(dtype)
                          if np.issubdtype(dtype, np.floating)
                          else rng.integers(0, 2, size=shape).astype(dtype))
    return feed


def token_ids(vocab_size: int, batch: int = 2, length: int = 16) -> np.ndarray:
    """Token ids for a transformers model: [CLS]-free random ids (any id is valid)."""
    return np.random.default_rng(SEED).integers(0, vocab_size, size=(batch, length),
                                                dtype=np.int64)


def output_error(source: list[np.ndarray], derived: list[np.ndarray]) -> dict[str, float]:
    """Max abs and RMS error over the floating outputs (integer outputs such as labels:
    the fraction that differ)."""
    worst = rms_sum = n = 0.0
    changed = total = 0
    for s, d in zip(source, derived, strict=True):
        s, d = np.asarray(s), np.asarray(d)
        if np.issubdtype(s.dtype, np.floating):
            diff = np.abs(d.astype(np.float64) - s.astype(np.float64))
            if diff.size:
                worst = max(worst, float(diff.max()))
                rms_sum += float((diff ** 2).sum())
                n += diff.size
        else:
            changed += int(np.count_nonzero(s != d))
            total += s.size
    out = {"output_max_abs_error": worst, "output_rms_error": (rms_sum / n) ** 0.5 if n else 0.0}
    if total:
        out["output_changed_fraction"] = changed / total
    return out
