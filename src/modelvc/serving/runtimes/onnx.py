"""ONNX Runtime: any .onnx model (scikit-learn via skl2onnx, PyTorch via torch.onnx)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import RuntimeClosed, RuntimeError_, TensorSpec

log = logging.getLogger("modelvc.serving")
# Models up to this size (all files of the folder) keep their optimized graph for a
# re-load: a larger one would cost a second copy on disk and its serialization on the
# first load, and its session creation is mostly reading weights, which no cache saves.
OPTIMIZED_MAX_BYTES = 64 << 20

ORT_TYPES = {
    "tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
    "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32",
    "tensor(int64)": "INT64", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


def _spec(arg: Any) -> TensorSpec | None:
    datatype = ORT_TYPES.get(arg.type)
    if datatype is None:  # sequences and maps (e.g. a ZipMap) are not OIP tensors
        return None
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape or [])
    return TensorSpec(arg.name, datatype, shape)


class OnnxRuntime:
    platform = "onnxruntime_onnx"
    # Pure compute with no callbacks into Python: the gateway may run a call that its
    # recent calls say is short on the event loop itself (see Gateway._predict).
    inline_safe = True

    def __init__(self, path: Path, *, threads: int = 1, optimized: Path | None = None,
                 optimized_exists: bool | None = None, session: Any = None) -> None:
        """`optimized`: where this version's optimized graph is kept between loads (a
        re-load, e.g. a rollback, then skips graph optimization: about half the session
        creation of a small model, CPU the event loop would otherwise wait for);
        `optimized_exists`: whether it is there, when the caller knows (no stat);
        `session`: one already built from `optimized` (`session_from_optimized`)."""
        self.model_file = path
        self.reused_optimized = session is not None  # whether `optimized` was loaded
        self._sess = session if session is not None else \
            self._session(path, threads, optimized, optimized_exists)
        ins = [_spec(a) for a in self._sess.get_inputs()]
        if any(s is None for s in ins):
            raise ValueError(f"{path.name}: an input is not a tensor; OIP serves tensors only")
        self.inputs: list[TensorSpec] = [s for s in ins if s is not None]
        self.outputs: list[TensorSpec] = [
            s for s in (_spec(a) for a in self._sess.get_outputs()) if s is not None]
        if not self.outputs:
            raise ValueError(f"{path.name} has no tensor output")
        self._all = [s.name for s in self.outputs]
        # The session's own run, not the Python wrapper's (which checks the input names
        # and WebGPU graph capture per call, ~5 us): the gateway checked the inputs
        # against the signature, and the session refuses a missing one all the same.
        inner = getattr(self._sess, "_sess", None)
        self._run = inner.run if inner is not None and hasattr(inner, "run") else None

    @staticmethod
    def _options(threads: int) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # One intra-op thread per session: the gateway runs requests concurrently, and
        # small models lose more to thread hand-offs than they gain from parallelism.
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        return opts

    @staticmethod
    def session_from_optimized(optimized: Path, threads: int) -> Any:
        """A session from a kept optimized graph: one call into ONNX Runtime that holds
        no GIL, so a thread can build it while the event loop serves."""
        import onnxruntime as ort

        opts = OnnxRuntime._options(threads)
        # Optimized already (by this ONNX Runtime, on this machine, at the default
        # level): the same graph the original would give, so the same answers.
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(str(optimized), opts, providers=["CPUExecutionProvider"])

    def _session(self, path: Path, threads: int, optimized: Path | None,
                 exists: bool | None) -> Any:
        import onnxruntime as ort

        cpu = ["CPUExecutionProvider"]
        if optimized is not None and (optimized.exists() if exists is None else exists):
            try:
                sess = self.session_from_optimized(optimized, threads)
                self.reused_optimized = True
                return sess
            except Exception as exc:  # a damaged cache file: load the original instead
                log.warning("%s: ignoring the cached optimized graph (%s)", path.name, exc)
                optimized.unlink(missing_ok=True)
        opts = self._options(threads)
        keep: tuple[Path, Path] | None = None  # (partial, final) when kept
        if optimized is not None and sum(
                f.stat().st_size for f in path.parent.rglob("*") if f.is_file()
        ) <= OPTIMIZED_MAX_BYTES:
            keep = optimized.with_name(optimized.name + ".partial"), optimized
            optimized.parent.mkdir(parents=True, exist_ok=True)
            opts.optimized_model_filepath = str(keep[0])
            # Saving a graph optimized at the default level warns that it may hold
            # hardware-specific nodes: it is only ever loaded on this machine.
            opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), opts, providers=cpu)
        if keep is not None and keep[0].exists():
            os.replace(*keep)  # complete, or not there at all
        return sess

    def predict(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        names = outputs or self._all
        try:
            values = self._run(names, inputs, None) if self._run is not None else \
                self._sess.run(names, inputs)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            if self._sess is None:  # (checked only on failure: nothing per call)
                raise RuntimeClosed("onnxruntime") from None
            raise RuntimeError_(f"onnxruntime: {exc}") from exc
        return dict(zip(names, values, strict=True))

    def sample_inputs(self) -> list[dict[str, np.ndarray]]:
        return [{s.name: s.sample(batch) for s in self.inputs} for batch in (1, 8)]

    def close(self) -> None:
        # Both references: the bound `run` keeps the native session alive too, and it
        # would then be destroyed wherever the last reference to this runtime drops.
        self._sess = self._run = None
