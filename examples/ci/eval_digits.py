"""Eval gate for the digits model: accuracy of the checked-out ONNX model on the test split.

usage: python eval_digits.py MODEL_DIR DATA.npz   (prints metrics as JSON on the last line)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main() -> None:
    model_dir, data = Path(sys.argv[1]), sys.argv[2]
    onnx_files = sorted(model_dir.rglob("*.onnx"))
    if not onnx_files:
        sys.exit(f"no .onnx file in {model_dir}")
    sess = ort.InferenceSession(str(onnx_files[0]), providers=["CPUExecutionProvider"])
    split = np.load(data)
    x, y = split["x"].astype(np.float32), split["y"]
    label = sess.run([sess.get_outputs()[0].name], {sess.get_inputs()[0].name: x})[0]
    print(json.dumps({"accuracy": float(np.mean(label == y)), "eval_samples": len(y)}))


if __name__ == "__main__":
    main()
