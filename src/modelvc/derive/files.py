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


def map_tensors(src: Path, out: Path, fn: Callable[[str, Tensor], Tensor]) -> int:
    """Copy SRC to OUT with fn applied to every tensor of every .safetensors file (the
    name passed is `file:tensor` when there are several files); the number of files."""
    paths = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    st = [p for p in paths if p.suffix == ".safetensors"]
    if not st:
        raise UsageError(f"{src} holds no .safetensors file",
                         hint="this recipe works on safetensors models")
    for p in paths:
        rel = p.name if src.is_file() else p.relative_to(src).as_posix()
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix != ".safetensors":
            shutil.copyfile(p, dest)
            continue
        found, meta = tensors.read(p)
        prefix = f"{rel}:" if len(st) > 1 else ""
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
