"""Format and safety: no pickles unless allowed, well-formed tensor files, lineage.

Files were parsed strictly at commit; here the manifest is re-checked (every tensor's
byte size agrees with its dtype and shape), which also catches a manifest written by
something other than modelvc's commit path.
"""

from __future__ import annotations

import math

from ...codec.dtypes import DTYPES
from ...manifest import FileEntry
from ...records import GateResult
from ..context import RunContext
from ..policy import Gate

TENSOR_FORMATS = ("safetensors", "onnx")


def safety(ctx: RunContext, gate: Gate) -> list[GateResult]:
    opts = gate.options
    files = ctx.manifest.files
    out = []
    pickles = [f.path for f in files if f.format == "pickle"]
    if opts["allow_pickle"]:
        out.append(GateResult("format", "pickle files", True, pickles, "allowed",
                              "allowed by the policy", gate.line))
    else:
        out.append(GateResult(
            "format", "no pickle files", not pickles, pickles, [],
            f"pickled files can run code when loaded: {', '.join(pickles)} (save as "
            "safetensors, or set format.allow_pickle: true)" if pickles else "", gate.line))
    if opts["check_files"]:
        problems = [p for f in files if f.format in TENSOR_FORMATS for p in _file_problems(f)]
        checked = sum(1 for f in files if f.format in TENSOR_FORMATS)
        out.append(GateResult("format", "tensor files valid", not problems,
                              f"{checked} safetensors/ONNX files", "valid",
                              "; ".join(problems[:5]), gate.line))
    lineage = ctx.version.lineage or {}
    if opts["require_clean_git"]:
        git = lineage.get("git")
        ok = isinstance(git, dict) and git.get("dirty") is False
        msg = ("" if ok else "committed outside a git working tree" if not git
               else "committed from a git tree with uncommitted changes; commit the code first")
        out.append(GateResult("format", "clean git commit", ok,
                              (git or {}).get("commit"), "clean", msg, gate.line))
    if opts["require_data"]:
        data = lineage.get("data") or []
        out.append(GateResult("format", "data fingerprints", bool(data),
                              [d.get("path") for d in data], "at least one",
                              "" if data else "no training data recorded: commit with --data "
                              "PATH", gate.line))
    return out


def _file_problems(f: FileEntry) -> list[str]:
    problems = []
    if f.format == "safetensors" and (not f.segments or f.segments[0].tensor is not None):
        problems.append(f"{f.path}: no safetensors header")
    if sum(s.size for s in f.segments) != f.size:
        problems.append(f"{f.path}: segments cover {sum(s.size for s in f.segments)} of "
                        f"{f.size} bytes")
    for s in f.tensors():
        info = DTYPES.get(s.dtype or "")
        if info is None:
            problems.append(f"{f.path}: tensor {s.tensor} has unknown dtype {s.dtype}")
        elif math.prod(s.shape or ()) * info.itemsize != s.size:
            problems.append(f"{f.path}: tensor {s.tensor} is {s.size} bytes, not "
                            f"{s.shape} x {info.itemsize}")
    return problems
