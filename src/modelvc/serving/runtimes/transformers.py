"""Hugging Face transformers pipelines from a save_pretrained folder (optional extra).

Text in (BYTES), label and score out: the common shape of classification pipelines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .base import RuntimeClosed, RuntimeError_, TensorSpec


class TransformersRuntime:
    platform = "transformers"
    def __init__(self, folder: Path) -> None:
        self.inputs = [TensorSpec("text", "BYTES", (-1,))]
        self.outputs = [TensorSpec("label", "BYTES", (-1,)), TensorSpec("score", "FP32", (-1,))]
        try:
            from transformers import pipeline
        except ImportError as exc:
            raise ValueError("this version needs the transformers runtime: "
                             "pip install 'modelvc[transformers]'") from exc
        config = json.loads((folder / "config.json").read_text())
        task = config.get("modelvc_task", "text-classification")
        self._pipe: Any = pipeline(task, model=str(folder), tokenizer=str(folder), device="cpu")

    def predict(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        texts = [t.decode() if isinstance(t, bytes) else str(t) for t in inputs["text"]]
        try:
            got = self._pipe(texts)
        except Exception as exc:  # the pipeline raises many unrelated types
            if self._pipe is None:
                raise RuntimeClosed("transformers") from None
            raise RuntimeError_(f"transformers: {exc}") from exc
        result = {"label": np.array([g["label"].encode() for g in got], dtype=object),
                  "score": np.array([g["score"] for g in got], dtype=np.float32)}
        return {k: result[k] for k in (outputs or ["label", "score"])}

    def sample_inputs(self) -> list[dict[str, np.ndarray]]:
        return [{"text": np.array([b"warm up"], dtype=object)}]

    def close(self) -> None:
        self._pipe = None
