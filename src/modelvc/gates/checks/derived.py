"""Derived gates: compare a version with the version it was derived from (the
`derived_from` its lineage records, e.g. by `modelvc derive`).

- metrics: the eval (command or entry point) runs on both checkouts; `source` in an
  expression is the source's value of the same metric (`accuracy >= source - 0.005`:
  at most half a point of accuracy lost). The source's recorded metrics count too.
- outputs: both models run on the same sample inputs and their outputs are compared
  (max abs, RMS and relative error, as metrics `output_max_abs_error`, ...): ONNX files
  in ONNX Runtime, or any model through `outputs.entry_point`.
"""

from __future__ import annotations

import importlib
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ...records import GateResult
from ..context import RunContext
from ..policy import Gate
from .evaluate import EvalFailed, run_eval
from .metric import number

ERRORS = ("max_abs_error", "rms_error", "relative_error")


def derived(ctx: RunContext, gate: Gate) -> list[GateResult]:
    rec = ctx.version.lineage.get("derived_from")
    if not isinstance(rec, dict) or not isinstance(rec.get("version"), str):
        return [GateResult("derived", "derived_from", False, None, "a derived version",
                           f"{ctx.label} records no derived_from: nothing to compare with "
                           "(make it with `modelvc derive`)", gate.line)]
    source = ctx.reg.resolve(f"{ctx.version.model}@{rec['version']}")
    src_label = f"{source.model}@v{source.number}"
    src_dir = Path(tempfile.mkdtemp(prefix="source-", dir=ctx.workdir)) / "model"
    ctx.reg.checkout(f"{source.model}@{source.id}", src_dir)
    out: list[GateResult] = []
    src_metrics = dict(source.metrics)
    if "command" in gate.options or "entry_point" in gate.options:
        data = ctx.data or gate.options.get("data")
        name = gate.options.get("command") or gate.options["entry_point"]
        try:
            mine = run_eval(ctx, gate, data, ctx.checkout(), ctx.version.id)
            theirs = run_eval(ctx, gate, data, src_dir, source.id)
        except EvalFailed as exc:
            return [GateResult("derived", name, False, None, "metrics as JSON", str(exc),
                               gate.line)] + [
                GateResult("derived", e.text, False, None, e.text,
                           "the eval did not produce metrics", gate.line) for e in gate.exprs]
        ctx.measured(mine, "derived")
        src_metrics.update(theirs)
        out.append(GateResult("derived", name, True, {"candidate": mine, "source": theirs},
                              "metrics as JSON", f"source {src_label}", gate.line))
    if "outputs" in gate.options:
        out += _outputs(ctx, gate, src_dir, src_label)
    for e in gate.exprs:
        value = number(ctx.metrics.get(e.metric))
        base = number(src_metrics.get(e.metric)) if e.uses_baseline else 0.0
        if value is None or base is None:
            who = ctx.label if value is None else f"the source {src_label}"
            out.append(GateResult("derived", e.text, False, {"candidate": value, "source": base},
                                  e.text, f"{who} has no numeric metric {e.metric!r} (record "
                                  "it at commit, or give the gate an eval)", gate.line))
            continue
        threshold = e.threshold(base)
        ok = e.check(value, base)
        where = f" ({src_label}: {base:g})" if e.uses_baseline else ""
        out.append(GateResult("derived", e.text, ok, value, f"{e.op} {threshold:g}{where}",
                              "" if ok else f"{e.metric} = {value:g} against the source "
                              f"{src_label}{where}: needs {e.op} {threshold:g}", gate.line))
    return out


def _outputs(ctx: RunContext, gate: Gate, src_dir: Path, src_label: str) -> list[GateResult]:
    opts = gate.options["outputs"]
    try:
        samples = dict(np.load(opts["samples"], allow_pickle=False))
    except (OSError, ValueError) as exc:
        return [GateResult("derived", "outputs", False, None, "sample inputs (.npz)",
                           f"cannot read outputs.samples {opts['samples']!r}: {exc}",
                           gate.line)]
    try:
        mine = _run(ctx.checkout(), opts, samples)
        theirs = _run(src_dir, opts, samples)
        errors = compare(theirs, mine, opts.get("names"))
    except _NoOutputs as exc:
        return [GateResult("derived", "outputs", False, None, "outputs", str(exc), gate.line)]
    ctx.measured({f"output_{k}": v for k, v in errors.items()}, "derived")
    out = []
    for key in ERRORS:
        if key not in opts:
            continue
        limit, value = float(opts[key]), errors[key]
        ok = value <= limit
        out.append(GateResult("derived", f"output {key}", ok, value, f"<= {limit:g}",
                              f"against {src_label} on {errors['samples']:g} samples" if ok
                              else f"output {key} = {value:.4g} against {src_label} is over "
                              f"{limit:g}", gate.line))
    return out


class _NoOutputs(Exception):
    pass


def _run(model_dir: Path, opts: dict[str, Any], samples: dict[str, np.ndarray]
         ) -> dict[str, np.ndarray]:
    if "entry_point" in opts:
        mod_name, _, fn_name = opts["entry_point"].partition(":")
        cwd = str(Path.cwd())  # the policy lives with the project's code: importable
        added = cwd not in sys.path
        if added:
            sys.path.insert(0, cwd)
        try:
            got = getattr(importlib.import_module(mod_name), fn_name)(str(model_dir), samples)
        except Exception as exc:  # the user's code: its failure fails the gate, with its text
            raise _NoOutputs(f"{opts['entry_point']} raised {type(exc).__name__}: {exc}"
                             ) from exc
        finally:
            if added:
                sys.path.remove(cwd)
        return got if isinstance(got, dict) else {"output": np.asarray(got)}
    import onnxruntime as ort

    files = sorted(model_dir.rglob("*.onnx"), key=lambda p: (-p.stat().st_size, p.name))
    if "file" in opts:
        files = [model_dir.joinpath(*opts["file"].split("/"))]
    if not files or not files[0].is_file():
        raise _NoOutputs(f"no ONNX file {opts.get('file', '')!r} in the checkout: give "
                         "outputs.entry_point to run another format")
    sess = ort.InferenceSession(str(files[0]), providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    if len(inputs) == 1 and inputs[0].name not in samples and len(samples) == 1:
        feed = {inputs[0].name: next(iter(samples.values()))}
    else:
        missing = [i.name for i in inputs if i.name not in samples]
        if missing:
            raise _NoOutputs(f"the samples have no array for input(s) {', '.join(missing)} "
                             f"(arrays: {', '.join(samples)})")
        feed = {i.name: samples[i.name] for i in inputs}
    try:
        got = sess.run(None, feed)
    except Exception as exc:  # onnxruntime raises untyped errors
        raise _NoOutputs(f"ONNX Runtime failed on the samples: {exc}") from exc
    return {o.name: np.asarray(v) for o, v in zip(sess.get_outputs(), got, strict=True)}


def compare(source: dict[str, np.ndarray], derived: dict[str, np.ndarray],
            names: list[str] | None = None) -> dict[str, float]:
    """Max abs, RMS and relative (||d - s|| / ||s||) error over the named outputs (all
    the source's by default), and the number of samples (the first dimension)."""
    keys = names or sorted(source)
    diffs, refs = [], []
    for k in keys:
        if k not in source or k not in derived:
            raise _NoOutputs(f"output {k!r} is missing (outputs: {', '.join(sorted(source))})")
        s, d = np.asarray(source[k], np.float64), np.asarray(derived[k], np.float64)
        if s.shape != d.shape:
            raise _NoOutputs(f"output {k!r} has shape {d.shape}, the source's {s.shape}")
        diffs.append((d - s).ravel())
        refs.append(s.ravel())
    diff, ref = np.concatenate(diffs), np.concatenate(refs)
    norm = float(np.linalg.norm(ref))
    return {"max_abs_error": float(np.abs(diff).max()) if diff.size else 0.0,
            "rms_error": float(np.sqrt(np.mean(diff ** 2))) if diff.size else 0.0,
            "relative_error": float(np.linalg.norm(diff)) / norm if norm else (
                0.0 if not np.any(diff) else math.inf),
            "samples": float(next(iter(source.values())).shape[0]
                             if source and next(iter(source.values())).ndim else 1)}
