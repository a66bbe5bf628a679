"""Walk a model folder: tensors of its safetensors files through a function, every
other file copied as is (in path order, so the same input gives the same output)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import tensors
from .tensors import Tensor


def map_tensors(src: Path, out: Path, fn: Callable[[str, Tensor], Tensor], *,
                onnx: bool = False) -> int:
    """Copy SRC to OUT with fn applied to every tensor of every .safetensors file (and,
    with `onnx`, to the initializers of every .onnx file: values only, see onnxfiles);
    the name passed is `file:tensor` when there are several such files. The number of
    files."""
    paths = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    kinds = (".safetensors", ".onnx") if onnx else (".safetensors",)
    st = [p for p in paths if p.suffix in kinds]
    if not st:
        raise UsageError(f"{src} holds no {' or '.join(kinds)} file",
                         hint=f"this recipe works on {' and '.join(k[1:] for k in kinds)} "
                              "models")
    for p in paths:
        rel = p.name if src.is_file() else p.relative_to(src).as_posix()
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        prefix = f"{rel}:" if len(st) > 1 else ""
        if p.suffix not in kinds:
            shutil.copyfile(p, dest)
            continue
        if p.suffix == ".onnx":
            from .onnxfiles import map_onnx

            map_onnx(p, dest, prefix, fn)
            continue
        found, meta = tensors.read(p)
        tensors.write(dest, {n: fn(prefix + n, t) for n, t in found.items()}, meta)
    return len(paths)


def edit_json(path: Path, fn: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite a JSON object file in place (config.json's torch_dtype, say), if present."""
    if not path.is_file():
        return
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        return  # not ours to judge: the file is copied as it was
    if isinstance(doc, dict):
        fn(doc)
        path.write_text(json.dumps(doc, indent=2) + "\n")
