"""Shared helpers for the fault tests: model files, the CLI, child processes, hashes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from . import zygote
from .zygote import Forked

CHILD = Path(__file__).with_name("child.py")
SRC = Path(__file__).resolve().parents[2] / "src"
SHAPES: list[tuple[int, ...]] = [
    (256, 256), (256,), (512, 256), (512,), (256, 512), (256,),
    (128, 128), (128,), (64, 256), (64,), (32, 32), (7,),
]  # 12 tensors, ~1.8 MB of float32


def tensors(seed: int, base: dict[str, np.ndarray] | None = None, *, scale: int = 1,
            noise: float = 1e-3) -> dict[str, np.ndarray]:
    """A dozen float32 tensors: fresh (base None) or a small perturbation of `base`."""
    rng = np.random.default_rng(seed)
    if base is not None:
        return {k: (v + rng.standard_normal(v.shape).astype(np.float32) * noise).astype(
            np.float32) for k, v in base.items()}
    out: dict[str, np.ndarray] = {}
    for i, shape in enumerate(SHAPES):
        big = (shape[0] * scale, *shape[1:])
        out[f"layer{i // 2}.{'weight' if i % 2 == 0 else 'bias'}"] = (
            rng.standard_normal(big).astype(np.float32))
    return out


def write_model(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Save as safetensors; returns the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(path), metadata={"format": "np"})
    return sha256(path)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("MODELVC_REGISTRY", None)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), e.get("PYTHONPATH", "")) if p)
    return e


def modelvc_exe() -> list[str]:
    exe = Path(sys.executable).with_name("modelvc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "modelvc.cli.main"]


def cli(registry: Path | str | None, *args: str, timeout: float = 60) -> (
        subprocess.CompletedProcess[str]):
    """Run the real `modelvc` command; never raises on a non-zero exit."""
    pre = ["--registry", str(registry)] if registry is not None else []
    return subprocess.run([*modelvc_exe(), *pre, *args], capture_output=True, text=True,
                          timeout=timeout, env=env(), check=False)


def cli_here(registry: Path | str | None, *args: str) -> subprocess.CompletedProcess[str]:
    """`cli` in this process (tests/services/clirun.py): for what the CLI says and does,
    not how its process behaves."""
    from tests.services.clirun import run

    pre = ["--registry", str(registry)] if registry is not None else []
    return run([*pre, *args])


def spawn(*args: str) -> Forked:
    """Start child.py with ARGS (see child.py for the verbs): a process forked from a
    zygote that imported modelvc once (tests/faults/zygote.py), not a fresh interpreter
    (0.35 s of CPU each)."""
    return zygote.spawn(args, env())


def wait_ready(p: Forked, timeout: float = 300) -> None:
    """Block until the child printed 'ready' (imports done, registry open). The
    timeout only guards against a hang (a loaded machine starts Python slowly)."""
    assert p.stdout is not None
    deadline = time.monotonic() + timeout
    line = p.stdout.readline()
    if line.strip() != "ready":
        err = p.stderr.read() if p.stderr else ""
        raise AssertionError(f"child did not get ready: {line!r} {err}")
    assert time.monotonic() < deadline


@dataclass
class ChildResult:
    rc: int
    out: dict[str, object]
    err: str


def finish(p: Forked, timeout: float = 60) -> ChildResult:
    out, err = p.communicate(timeout=timeout)
    last = [ln for ln in out.splitlines() if ln.startswith("{")]
    return ChildResult(p.returncode, json.loads(last[-1]) if last else {}, err)


def release(barrier: Path) -> None:
    barrier.write_text("go")


def run_children(argvs: Sequence[Sequence[str]], barrier: Path) -> list[ChildResult]:
    """Start every child, wait until all are ready, release them together."""
    procs = [spawn(*a) for a in argvs]
    for p in procs:
        wait_ready(p)
    release(barrier)
    return [finish(p) for p in procs]
