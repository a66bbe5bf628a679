"""Seeded sample inputs on which a recipe compares its output model with the source
(the same seed every run: the recorded output error can be reproduced exactly), and
the output error over them: one helper per kind of model, shared by the recipes
(quantize-dynamic, onnx-export)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

SEED = 0
TOKEN_SHAPES = ((2, 16),)  # (batch, sequence) of a token-input model's samples
ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
              "tensor(float16)": np.float16, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def onnx_session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_inputs(sess: Any, batch: int = 8) -> dict[str, np.ndarray] | None:
    """Random inputs shaped from the session's signature (dynamic dimensions = batch for
    the first, 16 for others; floats standard normal, integers 0/1); None when an input
    has a type no sample can be made for."""
    rng = np.random.default_rng(SEED)
    feed: dict[str, np.ndarray] = {}
    for arg in sess.get_inputs():
        dtype = ORT_DTYPES.get(arg.type)
        if dtype is None:
            return None
        shape = [d if isinstance(d, int) and d > 0 else (batch if i == 0 else 16)
                 for i, d in enumerate(arg.shape or [])]
        feed[arg.name] = (rng.standard_normal(shape).astype(dtype)
                          if np.issubdtype(dtype, np.floating)
                          else rng.integers(0, 2, size=shape).astype(dtype))
    return feed


def token_ids(vocab_size: int, batch: int = 2, length: int = 16) -> np.ndarray:
    """Token ids for a transformers model: [CLS]-free random ids (any id is valid)."""
    return np.random.default_rng(SEED).integers(0, vocab_size, size=(batch, length),
                                                dtype=np.int64)


def output_error(source: list[np.ndarray], derived: list[np.ndarray]) -> dict[str, float]:
    """Max abs and RMS error over the floating outputs (integer outputs such as labels:
    the fraction that differ)."""
    worst = rms_sum = n = 0.0
    changed = total = 0
    for s, d in zip(source, derived, strict=True):
        s, d = np.asarray(s), np.asarray(d)
        if np.issubdtype(s.dtype, np.floating):
            diff = np.abs(d.astype(np.float64) - s.astype(np.float64))
            if diff.size:
                worst = max(worst, float(diff.max()))
                rms_sum += float((diff ** 2).sum())
                n += diff.size
        else:
            changed += int(np.count_nonzero(s != d))
            total += s.size
    out = {"output_max_abs_error": worst, "output_rms_error": (rms_sum / n) ** 0.5 if n else 0.0}
    if total:
        out["output_changed_fraction"] = changed / total
    return out


def worst(errors: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The largest of each figure over several output_error results."""
    out: dict[str, float] = {}
    for e in errors:
        for k, v in e.items():
            out[k] = max(out.get(k, 0.0), v)
    return out


def onnx_error(source: Path, derived: Path) -> dict[str, float]:
    """output_error of the ONNX model DERIVED against SOURCE on onnx_inputs ({} when no
    sample can be made for the source's inputs)."""
    a, b = onnx_session(source), onnx_session(derived)
    feed = onnx_inputs(a)
    if feed is None:
        return {}
    return output_error(a.run(None, feed), b.run(None, feed))


TokenFeed = dict[str, np.ndarray]


def token_feeds(vocab_size: int, shapes: Iterable[tuple[int, int]] = TOKEN_SHAPES
                ) -> list[TokenFeed]:
    """`input_ids` (token_ids) and an all-ones `attention_mask` of each (batch, length)."""
    out = []
    for batch, length in shapes:
        ids = token_ids(vocab_size, batch, length)
        out.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    return out


def torch_outputs(model: Any, feeds: Iterable[TokenFeed]) -> list[np.ndarray]:
    """A transformers model's first output (last_hidden_state, logits) on each feed."""
    import torch

    with torch.no_grad():
        return [model(**{k: torch.from_numpy(v) for k, v in f.items()})[0].numpy()
                for f in feeds]


def token_error(want: list[np.ndarray], run: Callable[[TokenFeed], np.ndarray],
                feeds: list[TokenFeed]) -> dict[str, float]:
    """output_error, worst over FEEDS, of RUN(feed) against the source's outputs WANT
    (torch_outputs of the source, taken first: an export may change the module)."""
    return worst(output_error([w], [run(f)]) for w, f in zip(want, feeds, strict=True))
