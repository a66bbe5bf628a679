"""`quantize-dynamic`: int8 weights, activations quantized at run time.

- ONNX files: onnxruntime.quantization.quantize_dynamic (per tensor; QInt8 weights,
  symmetric, or `--param weight_type=uint8`: QUInt8, asymmetric, a zero point per weight).
- a transformers model in safetensors: torch.ao dynamic quantization of its Linear
  layers. The result is stored as safetensors (never a torch.save pickle): each
  quantized weight as its I8 values with `<weight>_scale` and `<weight>_zero_point`,
  listed in `quantization.json`; `load_torch(folder)` rebuilds the quantized module.

Per quantized tensor the scale, zero point and the max abs error of the dequantized
weight are recorded, and the output error against the source on seeded sample inputs
(samples.py). Both backends are deterministic (the same bytes for the same source and
tool versions), so `derive --check` compares bytes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from . import samples, tensors
from .files import architecture, fix_index
from .recipe import Applied, unknown
from .tensors import Tensor

BACKENDS = ("auto", "onnx", "torch")
WEIGHT_TYPES = ("int8", "uint8")
QFILE = "quantization.json"


class QuantizeDynamic:
    name = "quantize-dynamic"
    version = "1"
    deterministic = True
    tolerance = 0.0
    tools = ("onnxruntime", "onnx", "torch", "transformers")

    def params(self, raw: Mapping[str, str]) -> dict[str, Any]:
        unknown(raw, ("backend", "weight_type"), self.name)
        backend = raw.get("backend", "auto")
        if backend not in BACKENDS:
            raise UsageError(f"quantize-dynamic: backend {backend!r} is not one of "
                             f"{', '.join(BACKENDS)}",
                             hint="auto: ONNX files with onnxruntime, else torch")
        weight_type = raw.get("weight_type", "int8")
        if weight_type not in WEIGHT_TYPES:
            raise UsageError(f"quantize-dynamic: weight_type {weight_type!r} is not one of "
                             f"{', '.join(WEIGHT_TYPES)}",
                             hint="uint8 (asymmetric) is for ONNX models only")
        return {"backend": backend, "weight_type": weight_type}

    def apply(self, files_dir: Path, params: Mapping[str, Any], out_dir: Path) -> Applied:
        paths = ([files_dir] if files_dir.is_file() else
                 sorted(p for p in files_dir.rglob("*") if p.is_file()))
        has_onnx = any(p.suffix == ".onnx" for p in paths)
        backend = params["backend"]
        if backend == "auto":
            backend = "onnx" if has_onnx else "torch"
        if backend == "onnx":
            if not has_onnx:
                raise UsageError("quantize-dynamic: backend onnx, but the source has no "
                                 ".onnx file", hint="--param backend=torch for safetensors")
            return _onnx(files_dir, paths, out_dir, params.get("weight_type", "int8"))
        if params.get("weight_type", "int8") != "int8":
            raise UsageError("quantize-dynamic: torch quantizes weights as int8 only",
                             hint="drop --param weight_type, or quantize an ONNX export")
        return _torch(files_dir, out_dir)


def _rel(root: Path, p: Path) -> str:
    return p.name if root.is_file() else p.relative_to(root).as_posix()


def _onnx(root: Path, paths: list[Path], out_dir: Path, weight_type: str) -> Applied:
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    qtype = QuantType.QUInt8 if weight_type == "uint8" else QuantType.QInt8
    per: dict[str, dict[str, Any]] = {}
    errors: dict[str, float] = {}
    for p in paths:
        dest = out_dir / _rel(root, p)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix != ".onnx":
            shutil.copyfile(p, dest)
            continue
        with _quiet_root_logger():  # it advises pre-processing on the root logger
            quantize_dynamic(str(p), str(dest), weight_type=qtype)
        src = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(p)).graph.initializer}
        got = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(dest)).graph.initializer}
        prefix = f"{_rel(root, p)}:" if len(paths) > 1 else ""
        for name, q in got.items():
            base = name.removesuffix("_quantized")
            if base == name or base not in src:
                continue
            scale = float(got[f"{base}_scale"])
            zp = int(got[f"{base}_zero_point"])
            dq = (q.astype(np.float64) - zp) * scale
            per[prefix + base] = {"scale": scale, "zero_point": zp, "dtype": str(q.dtype),
                                  "max_abs_error": float(np.abs(dq - src[base]).max())}
        errors = samples.worst((errors, samples.onnx_error(p, dest)))
    return _applied(per, errors, f"onnxruntime.quantization.quantize_dynamic {qtype.name}")


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _applied(per: dict[str, dict[str, Any]], errors: dict[str, float], method: str) -> Applied:
    if not per:
        raise UsageError("quantize-dynamic: no weight was quantized",
                         hint="the model has no MatMul/Gemm (ONNX) or Linear (torch) weights")
    # Rounding to the nearest step: every dequantized weight within half a step.
    atol = max(max(s["scale"] / 2, s["max_abs_error"]) for s in per.values())
    return Applied(stats={"method": method, "tensors_quantized": len(per),
                          "max_abs_error": max(s["max_abs_error"] for s in per.values()),
                          **errors, "output_samples_seed": samples.SEED,
                          "per_tensor": per}, atol=atol)


def _torch(root: Path, out_dir: Path) -> Applied:
    import torch

    if root.is_file() or not (root / "config.json").is_file():
        raise UsageError("quantize-dynamic (torch) needs a transformers model folder "
                         "(config.json and safetensors weights)",
                         hint="for an ONNX model: --param backend=onnx")
    config, cls = architecture(root)
    source = cls.from_pretrained(root, dtype=torch.float32).eval()
    quantized = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
        source, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
    files = sorted(p for p in root.rglob("*.safetensors"))
    stored = {f: tensors.read(f) for f in files}
    where = {k: f for f, (ts, _) in stored.items() for k in ts}
    prefix = getattr(source, "base_model_prefix", "")
    modules: dict[str, str] = {}
    per: dict[str, dict[str, Any]] = {}
    for name, mod in quantized.named_modules():
        if not isinstance(mod, torch.ao.nn.quantized.dynamic.Linear):
            continue
        key = _key(f"{name}.weight", where, prefix)
        if key is None:
            continue  # a tied or generated weight not in the files: left to the float copy
        w = mod.weight()  # type: ignore[no-untyped-call]
        q = w.int_repr().numpy()
        scale, zp = float(w.q_scale()), int(w.q_zero_point())
        ts, _ = stored[where[key]]
        src = tensors.as_float64(ts[key])
        ts[key] = Tensor("I8", q)
        ts[f"{key}_scale"] = Tensor("F32", np.asarray(scale, np.float32))
        ts[f"{key}_zero_point"] = Tensor("I64", np.asarray(zp, np.int64))
        modules[name] = key
        per[key] = {"scale": scale, "zero_point": zp, "dtype": "int8",
                    "max_abs_error": float(np.abs((q.astype(np.float64) - zp) * scale
                                                  - src).max())}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        dest = out_dir / p.relative_to(root).as_posix()
        dest.parent.mkdir(parents=True, exist_ok=True)
        if p in stored:
            tensors.write(dest, *stored[p])
        else:
            shutil.copyfile(p, dest)
    engine = torch.backends.quantized.engine
    (out_dir / QFILE).write_text(json.dumps(
        {"method": "torch.ao.quantization.quantize_dynamic", "dtype": "qint8",
         "qscheme": "per_tensor_affine", "engine": engine, "modules": modules},
        indent=2, sort_keys=True) + "\n")
    fix_index(out_dir)
    errors: dict[str, float] = {}
    vocab = getattr(config, "vocab_size", None)
    if isinstance(vocab, int):
        feeds = samples.token_feeds(vocab)
        want = samples.torch_outputs(source, feeds)
        derived = load_torch(out_dir)
        errors = samples.token_error(want, lambda f: samples.torch_outputs(derived, [f])[0],
                                     feeds)
    return _applied(per, errors, f"torch.ao quantize_dynamic qint8 Linear ({engine})")


def _key(name: str, where: Mapping[str, Path], prefix: str) -> str | None:
    """The tensor name in the files of a module's weight (checkpoints are saved with or
    without the base model's prefix)."""
    for cand in (name, name.removeprefix(f"{prefix}."), f"{prefix}.{name}"):
        if cand in where:
            return cand
    return None


def load_torch(model_dir: str | Path) -> Any:
    """The torch module of a `quantize-dynamic` (torch) version checked out in MODEL_DIR:
    the architecture from config.json, float tensors loaded, then quantized the same way
    with the stored int8 weights, scales and zero points put back (no pickle is read)."""
    import torch

    root = Path(model_dir)
    spec = json.loads((root / QFILE).read_text())
    config, cls = architecture(root)
    model = cls._from_config(config, dtype=torch.float32).eval()
    found: dict[str, Tensor] = {}
    for f in sorted(root.rglob("*.safetensors")):
        found.update(tensors.read(f)[0])
    qkeys = set(spec["modules"].values())
    extra = {f"{k}_scale" for k in qkeys} | {f"{k}_zero_point" for k in qkeys}
    own = model.state_dict()
    prefix = getattr(model, "base_model_prefix", "")
    state = {}
    for k, t in found.items():
        if k in qkeys or k in extra:
            continue
        name = next((c for c in (k, f"{prefix}.{k}", k.removeprefix(f"{prefix}."))
                     if c in own), None)
        if name is not None:
            state[name] = torch.from_numpy(t.array)
    model.load_state_dict(state, strict=False)
    torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
        model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    for name, key in spec["modules"].items():
        mod = model.get_submodule(name)
        w = torch._make_per_tensor_quantized_tensor(
            torch.from_numpy(found[key].array), float(found[f"{key}_scale"].array),
            int(found[f"{key}_zero_point"].array))
        mod.set_weight_bias(w, mod.bias())
    return model
