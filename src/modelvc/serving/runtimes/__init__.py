"""Pick the runtime for a checked-out version from the files it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .base import Runtime, RuntimeClosed, RuntimeError_, TensorSpec

Trust = Literal["never", "any", "signed"]

__all__ = ["Runtime", "RuntimeClosed", "RuntimeError_", "TensorSpec", "Trust", "load_runtime"]


def load_runtime(folder: Path, *, label: str, trust: Trust = "never",
                 signed: bool = False, threads: int = 1, optimized: Path | None = None,
                 optimized_exists: bool | None = None, model_file: Path | None = None
                 ) -> Runtime:
    """A predictor.py wins (if trusted), then an .onnx file, then a transformers folder.
    `optimized`: where an ONNX model's optimized graph is kept for its next load
    (`optimized_exists`: whether it is there, if the caller knows). `model_file`: the
    ONNX file of a folder already known to hold no predictor (a checkout kept from an
    earlier load of the version): no look through the folder."""
    if model_file is not None:
        from .onnx import OnnxRuntime

        return OnnxRuntime(model_file, threads=threads, optimized=optimized,
                           optimized_exists=optimized_exists)
    if (folder / "predictor.py").exists():
        if trust == "never" or (trust == "signed" and not signed):
            need = "a signed version" if trust == "signed" else "trust = 'any' or 'signed'"
            raise ValueError(f"{label} carries a Python predictor; the trust policy "
                             f"({trust!r}) refuses to run it (needs {need})")
        from .python_predictor import PythonPredictor

        return PythonPredictor(folder, f"modelvc_predictor_{label.replace('@', '_')}")
    onnx = sorted(folder.rglob("*.onnx"))
    if onnx:
        from .onnx import OnnxRuntime

        preferred = [p for p in onnx if p.name == "model.onnx"]
        return OnnxRuntime((preferred or onnx)[0], threads=threads, optimized=optimized,
                           optimized_exists=optimized_exists)
    if (folder / "config.json").exists() and any(folder.glob("*.safetensors")):
        from .transformers import TransformersRuntime

        return TransformersRuntime(folder)
    raise ValueError(f"{label} holds no servable model (predictor.py, *.onnx, or a "
                     "transformers folder with config.json + safetensors)")
