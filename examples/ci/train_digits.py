"""Train a small MLP on scikit-learn's digits and export it to ONNX.

usage: python train_digits.py OUT_DIR DATA_DIR METRICS_JSON [--epochs N]
Writes OUT_DIR/model.onnx, the train/test split to DATA_DIR (the test split is what the
eval gate scores), and the test accuracy to METRICS_JSON.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("data")
    p.add_argument("metrics")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=a.epochs, random_state=a.seed)
    with warnings.catch_warnings():  # a short CI run stops before convergence on purpose
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xtr, ytr)
    out, data = Path(a.out), Path(a.data)
    out.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    onx = to_onnx(clf, xtr[:1], options={id(clf): {"zipmap": False}})
    (out / "model.onnx").write_bytes(onx.SerializeToString())
    np.savez(data / "digits_train.npz", x=xtr, y=ytr)
    np.savez(data / "digits_test.npz", x=xte, y=yte)
    metrics = {"accuracy": float(clf.score(xte, yte)), "epochs": a.epochs}
    Path(a.metrics).write_text(json.dumps(metrics))
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
