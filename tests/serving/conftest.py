"""Serving fixtures: real scikit-learn digits models exported to ONNX, a registry whose
production channel serves one, and real uvicorn gateways on free loopback ports."""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelvc.canary import Clock
from modelvc.registry import Registry
from modelvc.serving.config import ModelConfig, ServeConfig, load_config
from modelvc.serving.runner import BackgroundServer


@dataclass(frozen=True)
class Digits:
    x: np.ndarray  # float32 [n, 64] held-out inputs
    y: np.ndarray  # int64 [n] true labels
    good: bytes  # ONNX: logistic regression
    better: bytes  # ONNX: MLP
    broken: bytes  # ONNX: trained on shuffled labels


def _onnx(clf: Any, x: np.ndarray) -> bytes:
    from skl2onnx import to_onnx

    return bytes(to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}).SerializeToString())


def _train() -> Digits:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0)
    good = LogisticRegression(max_iter=300).fit(xtr, ytr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence: a good-enough MLP is all we need
        better = MLPClassifier((64,), max_iter=300, random_state=0).fit(xtr, ytr)
    broken = LogisticRegression(max_iter=100).fit(
        xtr, np.random.default_rng(0).permutation(ytr))
    return Digits(xte, yte.astype(np.int64), _onnx(good, xtr), _onnx(better, xtr),
                  _onnx(broken, xtr))


def _cache_file() -> Path:
    """Where the trained models are kept between sessions and shared by xdist workers:
    keyed by the libraries that make them and by `_train` itself."""
    import skl2onnx
    import sklearn

    key = hashlib.sha256(" ".join([np.__version__, sklearn.__version__, skl2onnx.__version__,
                                   inspect.getsource(_train)]).encode()).hexdigest()[:16]
    root = os.environ.get("MODELVC_TEST_CACHE") or \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelvc-tests"
    return Path(root) / f"digits-{key}.npz"


@pytest.fixture(scope="session")
def digits() -> Digits:
    """Three real digits classifiers as ONNX. Training takes seconds on an idle machine and
    minutes on a loaded one, so one process trains (a file lock: xdist workers wait) and
    every later session reads the cached result."""
    path = _cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            d = _train()
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.savez(f, x=d.x, y=d.y, **{k: np.frombuffer(getattr(d, k), np.uint8)
                                             for k in ("good", "better", "broken")})
            os.replace(tmp, path)
    with np.load(path) as z:
        return Digits(z["x"], z["y"], z["good"].tobytes(), z["better"].tobytes(),
                      z["broken"].tobytes())


def commit_onnx(reg: Registry, tmp: Path, data: bytes, tag: str, *,
                extra: dict[str, bytes] | None = None) -> int:
    folder = tmp / f"ck-{tag}"
    folder.mkdir(parents=True)
    if data:
        (folder / "model.onnx").write_bytes(data)
    for name, content in (extra or {}).items():
        (folder / name).write_bytes(content)
    return reg.commit(folder, model="digits", branch="dev", message=tag).number


@pytest.fixture
def serve_reg(reg: Registry, tmp_path: Path, digits: Digits) -> Registry:
    """digits@v1 (logistic regression) in production."""
    commit_onnx(reg, tmp_path, digits.good, "v1")
    reg.promote("digits@v1", "production", reason="first", create=True)
    return reg


Start = Callable[..., BackgroundServer]


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Start]:
    """start_gateway(reg, models=[...], clock=..., **cfg) -> a running gateway (its
    windows on `clock`, e.g. a ManualClock); stopped at teardown."""
    running: list[BackgroundServer] = []

    def start(reg: Registry, models: list[ModelConfig | dict[str, Any]] | None = None,
              clock: Clock = time.monotonic, **kw: Any) -> BackgroundServer:
        cfg: ServeConfig = load_config(None, {
            "models": models or [{"model": "digits"}], "port": 0,  # bound by the system
            "poll_interval": 0.05, "grpc_port": 0, **kw})
        srv = BackgroundServer(reg, cfg, workdir=tmp_path / f"serve{len(running)}",
                               clock=clock)
        running.append(srv)
        return srv.start()

    yield start
    for srv in running:
        srv.stop()
