"""`onnx-export` of the real MiniLM: an ONNX model (dynamic batch and sequence) whose
outputs agree with the torch source on the recipe's samples, as recorded, and on real
tokenized sentences; the same bytes when made again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelvc.api import Version
from modelvc.derive import check, derive
from modelvc.derive import samples as smp
from modelvc.errors import UsageError
from modelvc.registry import Registry
from tests.conftest import MINILM

from .conftest import checkout


def test_export_minilm(reg: Registry, minilm: Version, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    derive(reg, "minilm@v1", "onnx-export", to="onnx")
    rec = reg.resolve("minilm@onnx").lineage["derived_from"]
    assert rec["params"] == {"opset": 17}
    stats = rec["stats"]
    assert 0 < stats["output_max_abs_error"] < 1e-4
    co = checkout(reg, "minilm@onnx", tmp_path / "co")
    assert (co / "model.onnx").is_file() and (co / "tokenizer.json").is_file()
    assert not list(co.rglob("*.safetensors"))
    sess = smp.onnx_session(co / "model.onnx")
    src = AutoModel.from_pretrained(MINILM).eval()
    batch = AutoTokenizer.from_pretrained(MINILM)(
        ["The cat sat on the mat.", "An exported model answers like its source, to "
         "within float rounding, for any batch and sentence length."],
        padding=True, return_tensors="np")
    with torch.no_grad():
        want = src(input_ids=torch.from_numpy(batch["input_ids"]),
                   attention_mask=torch.from_numpy(batch["attention_mask"]))[0].numpy()
    got = sess.run(None, {"input_ids": batch["input_ids"],
                          "attention_mask": batch["attention_mask"]})[0]
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= max(10 * stats["output_max_abs_error"], 1e-4)
    assert check(reg, "minilm@onnx", record=False).ok


def test_export_refuses_a_bad_opset_and_a_non_transformers_source(
        reg: Registry, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="opset"):
        derive(reg, "x@v1", "onnx-export", to="o", params={"opset": "seven"})
    (tmp_path / "m").mkdir()
    np.save(tmp_path / "m" / "w.npy", np.zeros(3))
    reg.commit(tmp_path / "m", model="x")
    with pytest.raises(UsageError, match="transformers model folder"):
        derive(reg, "x@v1", "onnx-export", to="o")
