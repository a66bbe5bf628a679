"""Budgets: size on disk, parameter count, and load time and latency in ONNX Runtime.

Size and parameters come from the manifest (raw bytes; tensor elements). Load time and
latency are measured: the ONNX file is opened in a fresh InferenceSession (load_ms),
then `samples` random inputs shaped from its input signature (dynamic dimensions = 1)
are run one at a time after two warm-up runs (latency p50/p95 in milliseconds).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...records import GateResult
from ..context import RunContext
from ..policy import BUDGET_LIMITS, Gate

ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}
RUNTIME_LIMITS = ("load_ms", "latency_p50_ms", "latency_p95_ms")
WARMUP = 2


class NotMeasurable(Exception):
    pass


def static_measures(ctx: RunContext) -> dict[str, float]:
    out = {"size_mb": ctx.manifest.raw_size / 1e6}
    shapes = [s.shape or () for f in ctx.manifest.files for s in f.tensors()]
    if shapes:  # pickled weights are never unpickled, so their count is unknown
        out["params"] = float(sum(math.prod(shape) for shape in shapes))
    return out


def onnx_file(ctx: RunContext, wanted: str | None) -> str:
    onnx = [f for f in ctx.manifest.files if f.format == "onnx"]
    if wanted is not None:
        if not any(f.path == wanted for f in onnx):
            raise NotMeasurable(f"budget.file {wanted!r} is not an ONNX file of {ctx.label}")
        return wanted
    if not onnx:
        kinds = sorted({f.format for f in ctx.manifest.files})
        raise NotMeasurable(f"not measurable: {ctx.label} has no ONNX file (formats: "
                            f"{', '.join(kinds)}); load time and latency are measured with "
                            "ONNX Runtime")
    return max(onnx, key=lambda f: f.size).path


def runtime_measures(path: Path, samples: int) -> dict[str, float]:
    import onnxruntime as ort

    t0 = time.perf_counter()
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises untyped errors
        raise NotMeasurable(f"ONNX Runtime cannot load {path.name}: {exc}") from exc
    load_ms = (time.perf_counter() - t0) * 1000
    rng = np.random.default_rng(0)
    feeds = [_random_inputs(sess, rng) for _ in range(samples + WARMUP)]
    times = []
    for i, feed in enumerate(feeds):
        t = time.perf_counter()
        try:
            sess.run(None, feed)
        except Exception as exc:
            raise NotMeasurable(f"ONNX Runtime failed on a random input: {exc}") from exc
        if i >= WARMUP:
            times.append((time.perf_counter() - t) * 1000)
    return {"load_ms": load_ms, "latency_p50_ms": float(np.percentile(times, 50)),
            "latency_p95_ms": float(np.percentile(times, 95))}


def _random_inputs(sess: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feed: dict[str, np.ndarray] = {}
    for arg in sess.get_inputs():
        dtype = ORT_DTYPES.get(arg.type)
        if dtype is None:
            raise NotMeasurable(f"input {arg.name!r} has type {arg.type}: no random sample")
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in (arg.shape or [])]
        if np.issubdtype(dtype, np.floating):
            feed[arg.name] = rng.standard_normal(shape).astype(dtype)
        else:  # ids and masks: small values are valid for any vocabulary
            feed[arg.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feed


def measure(ctx: RunContext, wanted: str | None, samples: int) -> dict[str, float]:
    """Load time and latency of the version's ONNX file, run here and now."""
    rel = onnx_file(ctx, wanted)
    return runtime_measures(ctx.checkout().joinpath(*rel.split("/")), samples)


def budget(ctx: RunContext, gate: Gate) -> list[GateResult]:
    opts = gate.options
    measured: dict[str, float] = static_measures(ctx)
    problem = ""
    if any(k in opts for k in RUNTIME_LIMITS):
        try:
            measured.update(measure(ctx, opts.get("file"), int(opts["samples"])))
        except NotMeasurable as exc:
            problem = str(exc)
    ctx.measured(measured, "budget")
    out = []
    for key in BUDGET_LIMITS:
        if key not in opts:
            continue
        limit = float(opts[key])
        if key not in measured:
            why = problem if key in RUNTIME_LIMITS else (
                f"not measurable: {ctx.label} has no safetensors or ONNX tensors (pickled "
                "files are never unpickled)")
            out.append(GateResult("budget", key, False, None, f"<= {limit:g}", why, gate.line))
            continue
        value = measured[key]
        ok = value <= limit
        msg = "" if ok else f"{key} = {value:.4g} is over the budget of {limit:g}"
        if key.startswith("latency"):
            msg = (msg + "; " if msg else "") + f"{opts['samples']} samples"
        out.append(GateResult("budget", key, ok, round(value, 4), f"<= {limit:g}", msg,
                              gate.line))
    return out
