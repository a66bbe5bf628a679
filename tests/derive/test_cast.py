"""`cast` on the real MiniLM: torch's own rounding, recorded bound, a loadable model,
stored as a cast delta."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from modelvc.api import Version
from modelvc.derive import derive
from modelvc.derive import tensors as st
from modelvc.derive.cast import to_bf16
from modelvc.errors import UsageError
from modelvc.registry import Registry
from tests.conftest import MINILM
from tests.services.lazy import lazy

from .conftest import checkout

if TYPE_CHECKING:
    import torch
else:
    torch = lazy("torch")  # imported by the tests that use it, not at collection


def load_torch(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


@pytest.mark.parametrize(("dtype", "torch_name"), [("bf16", "bfloat16"), ("fp16", "float16")])
def test_cast_matches_torch_and_keeps_its_bound(reg: Registry, minilm: Version, tmp_path: Path,
                                                dtype: str, torch_name: str) -> None:
    torch_dtype = getattr(torch, torch_name)
    out = derive(reg, "minilm@v1", "cast", to=dtype, params={"dtype": dtype})
    rec = reg.resolve(f"minilm@{dtype}").lineage["derived_from"]
    assert rec == json.loads(json.dumps(out.derived_from))
    assert (rec["version"], rec["recipe"], rec["version_of_recipe"]) == (minilm.id, "cast", "1")
    assert rec["params"] == {"dtype": dtype} and "numpy" in rec["tools"]
    assert out.version.parents == [minilm.id]
    co = checkout(reg, f"minilm@{dtype}", tmp_path / "co")
    src = load_torch(str(MINILM / "model.safetensors"))
    got = load_torch(str(co / "model.safetensors"))
    assert got.keys() == src.keys()
    rtol, atol = rec["bound"]["rtol"], rec["bound"]["atol"]
    worst = 0.0
    for name, s in src.items():
        if s.dtype != torch.float32:
            assert torch.equal(got[name], s), name
            continue
        # Bit for bit what torch's round-to-nearest-even cast gives ...
        assert got[name].dtype == torch_dtype
        assert torch.equal(got[name].view(torch.int16), s.to(torch_dtype).view(torch.int16))
        # ... and within the recorded bound of the source, elementwise.
        err = (got[name].double() - s.double()).abs()
        assert bool((err <= atol + rtol * s.double().abs()).all()), name
        worst = max(worst, float(err.max()))
    assert rec["stats"]["max_abs_error"] == pytest.approx(worst)
    assert rec["stats"]["tensors_cast"] == sum(t.dtype == torch.float32 for t in src.values())
    assert json.loads((co / "config.json").read_text())["torch_dtype"] == (
        "bfloat16" if dtype == "bf16" else "float16")


def test_bf16_cast_is_stored_as_a_cast_delta(reg: Registry, minilm: Version) -> None:
    v = derive(reg, "minilm@v1", "cast", to="bf16").version
    assert v.raw_size > 40_000_000  # ~45 MB of BF16 tensors
    assert v.stored_size < 0.02 * v.raw_size, (v.stored_size, v.raw_size)


def test_the_bf16_model_loads_and_answers_like_the_source(reg: Registry, minilm: Version,
                                                          tmp_path: Path) -> None:
    from transformers import AutoModel

    derive(reg, "minilm@v1", "cast", to="bf16")
    co = checkout(reg, "minilm@bf16", tmp_path / "co")
    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102]])
    with torch.no_grad():
        ref = AutoModel.from_pretrained(MINILM).eval()(input_ids=ids).last_hidden_state
        model = AutoModel.from_pretrained(co, torch_dtype=torch.bfloat16).eval()
        assert next(model.parameters()).dtype == torch.bfloat16
        got = model(input_ids=ids).last_hidden_state.float()
    cos = torch.nn.functional.cosine_similarity(got.mean(1), ref.mean(1)).item()
    assert cos > 0.99, cos


def test_fp16_refuses_values_it_cannot_hold(reg: Registry, tmp_path: Path) -> None:
    d = tmp_path / "big"
    d.mkdir()
    st.write(d / "model.safetensors",
             {"w": st.Tensor("F32", np.array([[1.0, 1e5]], np.float32))})
    reg.commit(d, model="big")
    with pytest.raises(UsageError, match="beyond the F16 range") as e:
        derive(reg, "big", "cast", to="half", params={"dtype": "fp16"})
    assert e.value.hint and "bf16" in e.value.hint
    assert [r.name for r in reg.refs("big")] == ["main"]  # nothing committed
    with pytest.raises(UsageError, match="not bf16 or fp16"):
        derive(reg, "big", "cast", to="x", params={"dtype": "int4"})
    with pytest.raises(UsageError, match="no parameter sparsity"):
        derive(reg, "big", "cast", to="x", params={"sparsity": "0.5"})


def test_cast_of_a_sharded_checkpoint_rewrites_its_index(reg: Registry, tmp_path: Path
                                                         ) -> None:
    """The index's weight_map and total_size follow the shards written (a cast halves
    the F32 bytes)."""
    import json

    from safetensors.numpy import save_file

    src = tmp_path / "sharded"
    src.mkdir()
    rng = np.random.default_rng(0)
    shards = {"model-00001-of-00002.safetensors": {"a": rng.standard_normal((8, 8))},
              "model-00002-of-00002.safetensors": {"b": rng.standard_normal((4, 8)),
                                                   "ids": np.arange(5)}}
    total = 0
    for name, ts in shards.items():
        arrays = {k: v.astype(np.float32) if v.dtype.kind == "f" else v
                  for k, v in ts.items()}
        save_file(arrays, str(src / name))
        total += sum(v.nbytes for v in arrays.values())
    weight_map = {k: name for name, ts in shards.items() for k in ts}
    (src / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}))
    reg.commit(src, model="sh")
    derive(reg, "sh@v1", "cast", to="bf16")
    out = tmp_path / "out"
    reg.checkout("sh@bf16", out)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == weight_map
    assert index["metadata"]["total_size"] == (8 * 8 + 4 * 8) * 2 + 5 * 8


def test_bf16_rounding_at_the_edges_of_uint32() -> None:
    """The rounding sums in uint32: patterns where it could wrap (the largest finite
    values, infinities, every NaN) round as with the sum in 64 bits."""
    edge = [0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x7F800001, 0x7FC00000,
            0xFFFFFFFF, 0xFFFF8000, 0x7FFF7FFF, 0x00008000, 0x00018000, 0x80007FFF, 0]
    rnd = np.random.default_rng(0).integers(0, 2**32, 100_000, dtype=np.uint64)
    bits = np.concatenate([np.array(edge, dtype=np.uint64), rnd])
    wide = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    a = bits.astype(np.uint32).view(np.float32)
    nan = np.isnan(a)
    wide[nan] = (bits[nan] >> 16) | 0x40
    assert np.array_equal(to_bf16(a), wide.astype(np.uint16))
