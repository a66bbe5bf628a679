"""Shared pieces of the gate tests: a policy writer and small committed versions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from modelvc.gates.policy import Policy, parse_policy
from modelvc.meta.api import VersionRow
from modelvc.registry import Registry
from tests.conftest import write_model

POLICY = """\
version: 1
roles:
  admin: [alice]
  promoter: [bob, ci-bot]
models:
  m:
    channels:
      production:
        promoters: [ci-bot]
        gates:
          - metric: "accuracy >= 0.9"
      staging:
        gates:
          - metric: "accuracy >= 0.5"
          - regression: "accuracy >= staging - 0.05"
"""


def apply(reg: Registry, text: str = POLICY, actor: str = "alice") -> Policy:
    pol = parse_policy(textwrap.dedent(text), "policy.yaml")
    reg._governance.apply_policy(pol, actor)
    return pol


def commit(reg: Registry, tmp: Path, seed: int, accuracy: float) -> VersionRow:
    path = tmp / f"m{seed}.safetensors"
    write_model(path, seed)
    return reg.commit(path, model="m", metrics={"accuracy": accuracy})


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """(model.onnx, test split .npz, test accuracy) of a small MLP trained on digits."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    d = tmp_path_factory.mktemp("digits")
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0).fit(xtr, ytr)
    onnx = d / "model.onnx"
    onnx.write_bytes(to_onnx(clf, xtr[:1], options={id(clf): {"zipmap": False}})
                     .SerializeToString())
    np.savez(d / "test.npz", x=xte, y=yte)
    return onnx, d / "test.npz", float(clf.score(xte, yte))
