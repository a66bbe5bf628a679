"""Plain PyTorch loops: `with reg.run(model=..., branch=...) as run: run.commit(state_dict,
step=..., metrics=...)` (a Registry API verb: modelvc.api.run holds the Run). Kept here:
`run(reg, ...)`, the helper of earlier releases, and `tensor_bytes` (a state dict as the
bytes of a safetensors file, what `commit_files` stores)."""

from __future__ import annotations

from typing import Any

from ..api import RegistryAPI, RunAPI
from ..api.run import WEIGHTS, Run, number
from ..formats.memory import tensor_bytes

__all__ = ["WEIGHTS", "Run", "number", "run", "tensor_bytes"]


def run(reg: RegistryAPI, *, model: str, branch: str, **kwargs: Any) -> RunAPI:
    """`reg.run(model=..., branch=..., ...)`."""
    return reg.run(model=model, branch=branch, **kwargs)
