"""`with run(reg, model=..., branch=...) as r: r.commit(state_dict, step=..., metrics=...)`:
checkpoints of a training loop as versions on a branch, with no file for the caller to
write (nor a pickle: the state dict is serialized as safetensors).

A helper over the public `commit`, so it works the same on an embedded registry and
over a server. Each version records the run's params, the step's metrics and, in its
lineage, the run (`{"run": {"id", "step"}}`) next to the captured code commit and data
fingerprints (`data=` paths). On a clean exit the version with the best value of
`best` (a metric; `mode` min or max) is tagged `best_tag` (default `<branch>-best`).
"""

from __future__ import annotations

import io
import json
import math
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np

from ..api import RegistryAPI, Version
from ..errors import UsageError
from ..names import check_ref_name

WEIGHTS = "model.safetensors"
CODES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
         "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
         "bool": "BOOL"}


def tensor_bytes(state: Mapping[str, Any], metadata: Mapping[str, str] | None = None
                 ) -> bytes:
    """A state dict (torch tensors or numpy arrays) as safetensors bytes: tensors in name
    order, so the same state gives the same bytes."""
    buf = io.BytesIO()
    write_state(buf, state, metadata)
    return buf.getvalue()


def write_state(f: BinaryIO, state: Mapping[str, Any],
                metadata: Mapping[str, str] | None = None) -> None:
    """tensor_bytes into a file, tensor by tensor (no second copy of the whole state)."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    arrays, offset = [], 0
    for name in sorted(state):
        code, arr = _array(name, state[name])
        header[name] = {"dtype": code, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        arrays.append(arr)
        offset += arr.nbytes
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    f.write(len(head).to_bytes(8, "little"))
    f.write(head)
    for arr in arrays:
        f.write(arr.reshape(-1).view(np.uint8).data)


def _array(name: str, t: Any) -> tuple[str, np.ndarray]:
    """(safetensors dtype code, little-endian contiguous array) of one tensor; shares
    the tensor's memory where it can."""
    if hasattr(t, "detach"):  # a torch tensor: no torch import needed to read it
        t = t.detach().cpu()
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype == "bfloat16":  # numpy has no bfloat16: its 16-bit patterns
            import torch

            arr = t.contiguous().view(torch.int16).numpy()
        else:
            arr = t.contiguous().numpy()
    else:
        arr = np.asarray(t)
        dtype = str(arr.dtype)
    code = CODES.get(dtype)
    if code is None:
        raise UsageError(f"tensor {name!r} has dtype {dtype}, which safetensors cannot hold",
                         hint="convert it (e.g. .float()) before committing")
    arr = np.ascontiguousarray(arr).reshape(arr.shape)
    return code, arr.astype(arr.dtype.newbyteorder("<"), copy=False)


class Run:
    """One training run's commits on MODEL@BRANCH (see the module docstring)."""

    def __init__(self, reg: RegistryAPI, *, model: str, branch: str,
                 params: Mapping[str, Any] | None = None, data: Sequence[str | Path] = (),
                 parent: str | None = None, best: str | None = None, mode: str = "min",
                 best_tag: str | None = None, run_id: str | None = None,
                 files: Mapping[str, bytes] | None = None) -> None:
        if mode not in ("min", "max"):
            raise UsageError(f"mode {mode!r} is not min or max")
        self.reg, self.model, self.branch = reg, model, check_ref_name(branch, "branch name")
        self.params = dict(params or {})
        self.data = list(data)
        self.parent = parent  # the first commit's parent (a base model), if any
        self.best, self.mode = best, mode
        self.best_tag = best_tag or f"{branch}-best"
        self.id = run_id or uuid.uuid4().hex[:12]
        self.files = dict(files or {})  # config.json and the like, committed each time
        self.versions: list[Version] = []
        self.best_version: Version | None = None
        self._best_value: float | None = None

    def commit(self, state: Mapping[str, Any] | None = None, *, step: int,
               metrics: Mapping[str, Any] | None = None, message: str = "",
               folder: str | Path | None = None) -> Version:
        """Commit STATE (a state dict) or a FOLDER the framework saved (a checkpoint
        folder) as the next version of the branch."""
        if (state is None) == (folder is None):
            raise UsageError("give a state dict or a folder to commit, not both")
        found = {k: v for k, v in (metrics or {}).items() if _number(v) is not None}
        lineage = {"run": {"id": self.id, "step": step}}
        kwargs: dict[str, Any] = {
            "model": self.model, "branch": self.branch, "params": self.params,
            "metrics": {**found, "step": step}, "data": self.data, "lineage": lineage,
            "message": message or f"{self.branch} step {step}",
            "parent": self.parent if not self.versions and self.parent else None}
        if folder is not None:
            v = self.reg.commit(Path(folder), **kwargs)
        else:
            # The registry's commit reads files: the bytes go to a private folder once
            # (the caller writes nothing; modelvc stores them as tensors, deduplicated).
            with tempfile.TemporaryDirectory(prefix="modelvc-run-") as tmp:
                with (Path(tmp) / WEIGHTS).open("wb") as f:
                    write_state(f, state or {})
                for rel, body in self.files.items():
                    target = Path(tmp) / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(body)
                v = self.reg.commit(Path(tmp), **kwargs)
        self.versions.append(v)
        value = _number(found.get(self.best)) if self.best else None
        if value is not None and (self._best_value is None or (
                value < self._best_value if self.mode == "min" else value > self._best_value)):
            self._best_value, self.best_version = value, v
        return v

    def finish(self) -> Version | None:
        """Tag the best version (once; None if no commit had the metric)."""
        if self.best_version is None:
            return None
        self.reg.tag(f"{self.model}@{self.best_version.id}", self.best_tag)
        return self.best_version

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.finish()


def run(reg: RegistryAPI, *, model: str, branch: str, **kwargs: Any) -> Run:
    """A Run: `with run(reg, model="m", branch="exp-1", best="eval_loss") as r: ...`."""
    return Run(reg, model=model, branch=branch, **kwargs)


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)
