"""A Python predictor recorded with the version: `predictor.py` defining `Predictor`.

    class Predictor:
        inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        outputs = [{"name": "y", "datatype": "FP32", "shape": [-1]}]
        def __init__(self, folder): ...
        def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

Loading one runs code from the registry, so the gateway's trust policy decides
whether it may (see `runtimes.load_runtime`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .base import RuntimeClosed, RuntimeError_, TensorSpec

ENTRY = "predictor.py"


def _specs(raw: Any, what: str) -> list[TensorSpec]:
    try:
        return [TensorSpec(d["name"], d["datatype"], tuple(int(x) for x in d["shape"]))
                for d in raw]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{ENTRY}: Predictor.{what} must be a list of "
                         "{name, datatype, shape}") from exc


class PythonPredictor:
    platform = "python"

    def __init__(self, folder: Path, module_name: str) -> None:
        spec = importlib.util.spec_from_file_location(module_name, folder / ENTRY)
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot import {folder / ENTRY}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules.pop(module_name, None)  # never shared between versions
        cls = getattr(module, "Predictor", None)
        if cls is None:
            raise ValueError(f"{ENTRY} defines no class Predictor")
        self.inputs = _specs(getattr(cls, "inputs", None), "inputs")
        self.outputs = _specs(getattr(cls, "outputs", None), "outputs")
        self._impl = cls(folder)

    def predict(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        try:
            result = self._impl.predict(inputs)
            got = {k: np.asarray(v) for k, v in result.items()}
        except Exception as exc:  # user code: any failure is the model's
            if self._impl is None:
                raise RuntimeClosed("predictor") from None
            raise RuntimeError_(f"predictor: {type(exc).__name__}: {exc}") from exc
        return {k: got[k] for k in (outputs or [s.name for s in self.outputs]) if k in got}

    def sample_inputs(self) -> list[dict[str, np.ndarray]]:
        return [{s.name: s.sample() for s in self.inputs}]

    def close(self) -> None:
        close = getattr(self._impl, "close", None)
        if callable(close):
            close()
        self._impl = None
