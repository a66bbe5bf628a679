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
    fix_index(out)
    return len(paths)


def fix_index(out: Path) -> None:
    """Bring every sharded-checkpoint index (`*.safetensors.index.json`) in OUT in line
    with the shards written there: weight_map from their tensors, total_size their bytes
    (a cast halves it; a quantized weight adds its scale and zero point)."""
    from ..formats.safetensors import read_safetensors_header

    for index in sorted(out.rglob("*.safetensors.index.json")):
        try:
            doc = json.loads(index.read_text())
        except ValueError:
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("weight_map"), dict):
            continue
        weight_map: dict[str, str] = {}
        total = 0
        for shard in sorted(set(doc["weight_map"].values())):
            path = index.parent / shard
            if not path.is_file():
                continue
            for name, entry in read_safetensors_header(path).items():
                if name != "__metadata__":
                    weight_map[name] = shard
                    total += entry["data_offsets"][1] - entry["data_offsets"][0]
        doc["weight_map"] = dict(sorted(weight_map.items()))
        meta = doc.get("metadata")
        doc["metadata"] = {**(meta if isinstance(meta, dict) else {}), "total_size": total}
        index.write_text(json.dumps(doc, indent=2) + "\n")


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


def architecture(model_dir: Path) -> tuple[Any, Any]:
    """(config, model class) of the transformers model in MODEL_DIR: its config's first
    `architectures` entry, else AutoModel."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(model_dir)
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    return config, cls or transformers.AutoModel
