"""`quantize-dynamic` on real models: the digits MLP (ONNX, onnxruntime) and MiniLM
(safetensors, torch.ao): int8 weights within half a step of the source, per-tensor
stats recorded, a loadable model whose outputs agree with the source's within the
recorded error, and `--check` makes the same bytes again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from modelvc.api import Version
from modelvc.derive import check, derive
from modelvc.derive import samples as smp
from modelvc.errors import UsageError
from modelvc.registry import Registry
from tests.conftest import MINILM

from .conftest import checkout


def test_onnx_digits(reg: Registry, digits: tuple[Path, Path, float], tmp_path: Path) -> None:
    onnx_path, test_npz, acc = digits
    reg.commit(onnx_path, model="digits")
    derive(reg, "digits@v1", "quantize-dynamic", to="int8")
    rec = reg.resolve("digits@int8").lineage["derived_from"]
    assert rec["params"] == {"backend": "auto", "weight_type": "int8"} and rec["deterministic"]
    per = rec["stats"]["per_tensor"]
    assert sorted(per) == ["coefficient", "coefficient1"]  # the two weight matrices
    for s in per.values():
        assert s["dtype"] == "int8" and 0 <= s["max_abs_error"] <= s["scale"] / 2 + 1e-9
    assert reg.manifest("digits@int8").kind == "file"
    out = checkout(reg, "digits@int8", tmp_path / "q.onnx")
    # The recorded output error is what the seeded samples give again.
    a, b = smp.onnx_session(onnx_path), smp.onnx_session(out)
    feed = smp.onnx_inputs(a)
    assert feed is not None
    err = smp.output_error(a.run(None, feed), b.run(None, feed))
    assert err["output_max_abs_error"] == rec["stats"]["output_max_abs_error"]
    # And on the real test split the int8 model classifies as well, give or take a digit.
    x, y = np.load(test_npz)["x"], np.load(test_npz)["y"]
    lab, prob = b.run(None, {b.get_inputs()[0].name: x})
    _, prob0 = a.run(None, {a.get_inputs()[0].name: x})
    assert np.mean(lab == y) >= acc - 0.01
    assert np.abs(prob - prob0).max() < 0.1
    # diff pairs each W_quantized with the source's W and compares it dequantized.
    d = reg.diff("digits@v1", "digits@int8")
    by = {t.name: t for t in d.tensors}
    for name, s in per.items():
        assert by[name].dequantized and by[name].max_abs == pytest.approx(s["max_abs_error"])
    assert d.error is not None and d.error["max_abs"] == pytest.approx(
        max(s["max_abs_error"] for s in per.values()))
    result = check(reg, "digits@int8", record=False)
    assert result.ok and [f.status for f in result.files] == ["same"]


def test_onnx_uint8_zero_points_read_from_the_model(
        reg: Registry, digits: tuple[Path, Path, float]) -> None:
    """QUInt8 weights are asymmetric: a zero point per weight, kept by ONNX in int32_data
    (no tensor segment). diff reads it from the model: the dequantized error it reports
    is the recipe's, which a zero point taken as 0 would make ~zero_point * scale."""
    onnx_path, _, _ = digits
    reg.commit(onnx_path, model="digits")
    derive(reg, "digits@v1", "quantize-dynamic", to="u8", params={"weight_type": "uint8"})
    rec = reg.resolve("digits@u8").lineage["derived_from"]
    per = rec["stats"]["per_tensor"]
    assert rec["params"]["weight_type"] == "uint8"
    assert all(s["dtype"] == "uint8" for s in per.values())
    assert any(s["zero_point"] not in (0, 128) for s in per.values())
    by = {t.name: t for t in reg.diff("digits@v1", "digits@u8").tensors}
    for name, s in per.items():
        assert by[name].dequantized and by[name].max_abs == pytest.approx(s["max_abs_error"])
        assert by[name].max_abs <= s["scale"] / 2 + 1e-9
    with pytest.raises(UsageError, match="weight_type"):
        derive(reg, "digits@v1", "quantize-dynamic", to="u9", params={"weight_type": "u9"})


def test_torch_minilm(reg: Registry, minilm: Version, tmp_path: Path,
                      source_tensors: dict[str, np.ndarray]) -> None:
    import torch

    from modelvc.derive.quantize import load_torch

    derive(reg, "minilm@v1", "quantize-dynamic", to="int8", params={"backend": "torch"})
    rec = reg.resolve("minilm@int8").lineage["derived_from"]
    per = rec["stats"]["per_tensor"]
    # q, k, v, attention output, intermediate, output in each of 6 layers; the pooler
    assert len(per) == 6 * 6 + 1 and "pooler.dense.weight" in per
    co = checkout(reg, "minilm@int8", tmp_path / "co")
    stored = load_file(str(co / "model.safetensors"))
    for key, s in per.items():
        q = stored[key]
        assert q.dtype == np.int8
        assert float(stored[f"{key}_scale"]) == pytest.approx(s["scale"])
        dq = (q.astype(np.float64) - int(stored[f"{key}_zero_point"])) * s["scale"]
        err = np.abs(dq - source_tensors[key]).max()
        assert err == pytest.approx(s["max_abs_error"]) and err <= rec["bound"]["atol"]
    # Everything else is the source's, untouched.
    for key, src in source_tensors.items():
        if key not in per:
            assert np.array_equal(stored[key], src), key
    assert not any(p.suffix in (".bin", ".pt", ".pth") for p in co.rglob("*"))
    model = load_torch(co)
    assert isinstance(model.encoder.layer[0].attention.self.query,
                      torch.ao.nn.quantized.dynamic.Linear)
    from transformers import AutoModel

    src = AutoModel.from_pretrained(MINILM).eval()
    ids = torch.from_numpy(smp.token_ids(src.config.vocab_size))
    with torch.no_grad():
        a, b = src(input_ids=ids)[0], model(input_ids=ids)[0]
    err = float((a - b).abs().max())
    assert err == pytest.approx(rec["stats"]["output_max_abs_error"])
    # On real sentences the int8 model's embeddings (mean pooled) point nearly the same
    # way (about 0.93-0.96 cosine: MiniLM's activation outliers cost plain per-tensor
    # dynamic int8 this much; a derived gate is where a team decides if that is enough).
    from transformers import AutoTokenizer

    batch = AutoTokenizer.from_pretrained(MINILM)(
        ["The cat sat on the mat.", "Quantized weights take a quarter of the space.",
         "Version control for neural networks."], padding=True, return_tensors="pt")
    mask = batch["attention_mask"].unsqueeze(-1)
    with torch.no_grad():
        ea = (src(**batch)[0] * mask).sum(1) / mask.sum(1)
        eb = (model(**batch)[0] * mask).sum(1) / mask.sum(1)
    cos = torch.nn.functional.cosine_similarity(ea, eb)
    assert float(cos.min()) > 0.9, cos
    assert check(reg, "minilm@int8", record=False).ok
