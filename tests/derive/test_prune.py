"""`prune` on the real MiniLM: the sparsity asked is the sparsity recorded and found,
only the smallest magnitudes go, the model still loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from modelvc.api import Version
from modelvc.derive import derive
from modelvc.derive.prune import smallest
from modelvc.errors import UsageError
from modelvc.registry import Registry
from tests.conftest import MINILM, write_model

from .conftest import checkout


def test_prune_half_of_every_matrix(reg: Registry, minilm: Version, tmp_path: Path,
                                    source_tensors: dict[str, np.ndarray]) -> None:
    out = derive(reg, "minilm@v1", "prune", to="sparse", params={"sparsity": "0.5"})
    rec = reg.resolve("minilm@sparse").lineage["derived_from"]
    assert rec["params"] == {"sparsity": 0.5, "exclude": ""}
    assert out.version.parents == [minilm.id]
    got = load_file(str(checkout(reg, "minilm@sparse", tmp_path / "co") / "model.safetensors"))
    per = rec["stats"]["per_tensor"]
    matrices = {n for n, a in source_tensors.items() if a.dtype == np.float32 and a.ndim >= 2}
    assert set(per) == matrices
    zeros = total = 0
    for name, src in source_tensors.items():
        new = got[name]
        if name not in matrices:
            assert np.array_equal(new, src), name
            if src.dtype == np.float32:
                zeros, total = zeros + int((src == 0).sum()), total + src.size
            continue
        cut = new == 0
        achieved = cut.mean()
        assert per[name]["sparsity"] == pytest.approx(achieved)
        assert 0.5 <= achieved < 0.5 + 1e-3 + (src == 0).mean(), name
        # What is kept is the source exactly; what went was never larger than what stayed.
        assert np.array_equal(new[~cut], src[~cut])
        assert np.abs(src[cut]).max() <= per[name]["threshold"] <= np.abs(src[~cut]).min()
        assert per[name]["threshold"] <= rec["bound"]["atol"]
        zeros, total = zeros + int(cut.sum()), total + src.size
    assert rec["stats"]["sparsity_overall"] == pytest.approx(zeros / total)
    assert rec["stats"]["sparsity_pruned"] == pytest.approx(0.5, abs=1e-3)


def test_pruned_model_loads_and_exclude_keeps_the_embeddings(reg: Registry, minilm: Version,
                                                            tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel

    derive(reg, "minilm@v1", "prune", to="mild",
           params={"sparsity": "0.1", "exclude": "embeddings"})
    per = reg.resolve("minilm@mild").lineage["derived_from"]["stats"]["per_tensor"]
    assert per and not any("embeddings" in n for n in per)
    co = checkout(reg, "minilm@mild", tmp_path / "co")
    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102]])
    with torch.no_grad():
        ref = AutoModel.from_pretrained(MINILM).eval()(input_ids=ids).last_hidden_state
        got = AutoModel.from_pretrained(co).eval()(input_ids=ids).last_hidden_state
    cos = torch.nn.functional.cosine_similarity(got.mean(1), ref.mean(1)).item()
    assert cos > 0.95, cos


@pytest.mark.parametrize(("params", "message"), [
    ({"sparsity": "1.5"}, "not a number in"), ({"sparsity": "half"}, "not a number in"),
    ({"exclude": "("}, "not a regular expression"), ({"level": "3"}, "no parameter level")])
def test_bad_parameters_are_refused_before_anything(reg: Registry, tmp_path: Path,
                                                    params: dict[str, str], message: str
                                                    ) -> None:
    write_model(tmp_path / "m" / "model.safetensors")  # a parameter check: any model
    reg.commit(tmp_path / "m", model="m", message="base")
    with pytest.raises(UsageError, match=message):
        derive(reg, "m@v1", "prune", to="x", params=params)
    assert [v.number for v in reg.versions("m")] == [1]


@pytest.mark.parametrize("seed", range(40))
def test_the_pruned_set_is_the_stable_sorts(seed: int) -> None:
    """`smallest` (a partition) names the positions a stable argsort's first k do: the
    smallest magnitudes, ties by position, NaN last (the bytes a recorded prune made
    must come out again for `derive check`)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    values = (rng.choice([0.0, -0.0, 1.0, -1.0, 0.5, 2.0, np.nan], size=n) if seed % 2
              else rng.standard_normal(n))
    mags = np.abs(values)
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        want = np.sort(np.argsort(mags, kind="stable")[:k])
        assert np.array_equal(np.sort(smallest(mags, k)), want), (seed, k)
