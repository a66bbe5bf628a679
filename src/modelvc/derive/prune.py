"""`prune`: unstructured magnitude pruning. In every floating tensor of two or more
dimensions (weight matrices, embeddings; not biases or norms) the `sparsity` fraction
of smallest-magnitude entries is set to zero, ties broken by position (stable sort), so
the same source and parameters give the same bytes. Safetensors tensors and ONNX
initializers alike."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .files import map_tensors
from .recipe import Applied, unknown
from .tensors import Tensor, as_float64

FLOATS = ("F64", "F32", "F16", "BF16")


class Prune:
    name = "prune"
    version = "1"
    deterministic = True
    tolerance = 0.0
    tools = ("numpy", "onnx")

    def params(self, raw: Mapping[str, str]) -> dict[str, Any]:
        unknown(raw, ("sparsity", "exclude"), self.name)
        text = raw.get("sparsity", "0.5")
        try:
            sparsity = float(text)
        except ValueError:
            sparsity = -1.0
        if not 0.0 <= sparsity < 1.0:
            raise UsageError(f"prune: sparsity {text!r} is not a number in [0, 1)",
                             hint="--param sparsity=0.5 zeroes half of each weight matrix")
        exclude = raw.get("exclude", "")
        try:
            re.compile(exclude)
        except re.error as exc:
            raise UsageError(f"prune: exclude {exclude!r} is not a regular expression "
                             f"({exc})", hint="e.g. --param exclude=embeddings") from exc
        return {"sparsity": sparsity, "exclude": exclude}

    def apply(self, files_dir: Path, params: Mapping[str, Any], out_dir: Path) -> Applied:
        sparsity = float(params["sparsity"])
        exclude = re.compile(params["exclude"]) if params["exclude"] else None
        per: dict[str, dict[str, Any]] = {}
        zeros = total = pruned_zeros = pruned_total = 0

        def one(name: str, t: Tensor) -> Tensor:
            nonlocal zeros, total, pruned_zeros, pruned_total
            if t.code not in FLOATS:
                return t
            total += t.array.size
            if t.array.ndim < 2 or (exclude is not None and exclude.search(name)):
                zeros += int(np.count_nonzero(as_float64(t) == 0))
                return t
            values = as_float64(t).ravel()
            k = int(sparsity * values.size)
            mags = np.abs(values)
            order = smallest(mags, k)
            flat = t.array.copy().reshape(-1)
            flat[order] = 0  # 0 is +0.0 in every float format, BF16 bits included
            threshold = float(mags[order].max()) if k else 0.0
            n0 = int(np.count_nonzero(as_float64(Tensor(t.code, flat)) == 0))
            per[name] = {"sparsity": n0 / values.size, "threshold": threshold}
            zeros += n0
            pruned_zeros += n0
            pruned_total += values.size
            return Tensor(t.code, flat.reshape(t.array.shape))

        files = map_tensors(files_dir, out_dir, one, onnx=True)
        atol = max((s["threshold"] for s in per.values()), default=0.0)
        return Applied(stats={"files": files, "tensors_pruned": len(per),
                              "sparsity_pruned": pruned_zeros / pruned_total
                              if pruned_total else 0.0,
                              "sparsity_overall": zeros / total if total else 0.0,
                              "per_tensor": per},
                       atol=atol)


def smallest(mags: np.ndarray, k: int) -> np.ndarray:
    """The positions of the k smallest of MAGS, ties broken by position: the set
    `np.argsort(mags, kind="stable")[:k]` names (NaN last), found by a partition (linear)
    instead of a sort (a stable sort of MiniLM's embedding took seconds)."""
    if k <= 0:
        return np.zeros(0, np.intp)
    kth = np.partition(mags, k - 1)[k - 1]
    if np.isnan(kth):  # NaN sorts last: every number, then NaNs by position
        below, at = np.flatnonzero(~np.isnan(mags)), np.flatnonzero(np.isnan(mags))
    else:
        below, at = np.flatnonzero(mags < kth), np.flatnonzero(mags == kth)
    return np.concatenate([below, at[: k - below.size]])
