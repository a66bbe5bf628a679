"""What every runtime offers the gateway: a signature and a predict call."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

# Open Inference Protocol datatype <-> numpy dtype (BYTES are object arrays of bytes).
OIP_TO_NUMPY: dict[str, np.dtype[np.generic]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
NUMPY_TO_OIP = {v.str: k for k, v in OIP_TO_NUMPY.items() if k != "BYTES"}


_SEEN: dict[np.dtype[np.generic], str] = {}  # per request 3+ lookups: remembered


def oip_datatype(dtype: np.dtype[np.generic]) -> str:
    got = _SEEN.get(dtype)
    if got is None:
        got = "BYTES" if dtype.kind in "OSU" else NUMPY_TO_OIP[dtype.newbyteorder("<").str]
        if len(_SEEN) < 256:  # structured dtypes are endless; the common ones are few
            _SEEN[dtype] = got
    return got


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 for a free dimension

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def sample(self, batch: int = 1) -> np.ndarray:
        """Zeros of this signature, free dimensions set to `batch` (for warm-up)."""
        shape = tuple(batch if d < 0 else d for d in self.shape)
        if self.datatype == "BYTES":
            return np.full(shape, b"warm-up", dtype=object)
        return np.zeros(shape, OIP_TO_NUMPY[self.datatype])


class RuntimeError_(Exception):
    """A model failed while predicting (the gateway answers 500 and counts an error)."""


def report_failure(log: logging.Logger, where: str, exc: Exception) -> str:
    """Log a failed request and say what its caller is told. A model's own failure on
    its input is one warning line (a bad input is routine: a traceback per request
    buried the log); anything else is the gateway's bug, with its traceback."""
    if isinstance(exc, RuntimeError_):
        log.warning("%s: the model failed: %s", where, exc)
        return f"the model failed on this request: {exc}"
    log.error("%s: internal error", where, exc_info=exc)
    return f"internal error ({type(exc).__name__}): {exc}"


class RuntimeClosed(RuntimeError_):
    """predict() after close(): the pool freed a version a request still reached. An
    internal invariant broke (swap.Pool frees a version only when no slot holds it and
    no request is inside it), not a fault of the model."""

    def __init__(self, runtime: str) -> None:
        super().__init__(f"{runtime}: internal error: this version was already unloaded "
                         "(closed) when a request reached it; the gateway must never route "
                         "to a freed version (please report this)")


class Runtime(Protocol):
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def predict(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """Run the model; return the requested outputs (all when `outputs` is empty)."""
        ...

    def sample_inputs(self) -> list[dict[str, np.ndarray]]:
        """Inputs to warm the model up with before it takes traffic."""
        ...

    def close(self) -> None: ...
