"""`derive --check`: a derived version made again from its source; a forged one (bytes
made by something else under a copied record) is caught, and the outcome is recorded."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from modelvc.api import Version
from modelvc.derive import check, derive
from modelvc.derive import tensors as st
from modelvc.errors import UsageError
from modelvc.registry import Registry
from tests.conftest import MINILM


def test_check_passes_a_genuine_version_and_tags_it(reg: Registry, minilm: Version) -> None:
    v = derive(reg, "minilm@v1", "prune", to="sparse", params={"sparsity": "0.3"}).version
    r = check(reg, "minilm@sparse")
    assert r.ok and r.deterministic and r.source == "minilm@v1"
    assert {f.status for f in r.files} == {"same"}
    assert "model.safetensors" in {f.path for f in r.files}
    assert r.tag == "derive-ok-v2" and reg.resolve("minilm@derive-ok-v2").id == v.id
    moves = [a for a in reg.audit(model="minilm") if "derive-ok-v2" in str(a.target)]
    assert moves, "creating the tag is audited"
    assert check(reg, "minilm@sparse").ok  # again: the existing tag records it
    r = check(reg, "minilm@sparse", record=False)
    assert r.ok and r.tag is None


def _truncate_to_bf16(a: np.ndarray) -> np.ndarray:
    """BF16 by dropping the low 16 bits (round toward zero): close, but not the recipe."""
    return (a.view(np.uint32) >> 16).astype(np.uint16)


def test_check_detects_bytes_made_by_something_else(reg: Registry, minilm: Version,
                                                     tmp_path: Path) -> None:
    genuine = derive(reg, "minilm@v1", "cast", to="bf16")
    # A forger: truncation instead of round-to-nearest-even, the genuine record copied.
    forged = tmp_path / "forged"
    reg.checkout("minilm@bf16", forged)
    src, meta = st.read(MINILM / "model.safetensors")
    st.write(forged / "model.safetensors",
             {n: st.Tensor("BF16", _truncate_to_bf16(t.array)) if t.code == "F32" else t
              for n, t in src.items()}, meta)
    record = copy.deepcopy(genuine.derived_from)
    v = reg.commit(forged, model="minilm", branch="forged", parent=f"minilm@{minilm.id}",
                   lineage={"derived_from": record})
    assert v.lineage["derived_from"] == reg.resolve("minilm@bf16").lineage["derived_from"]
    r = check(reg, "minilm@forged")
    assert not r.ok
    bad = {f.path: f.status for f in r.files if f.status != "same"}
    assert bad == {"model.safetensors": "differs"}
    assert r.tag == f"derive-failed-v{v.number}"
    assert reg.resolve(f"minilm@{r.tag}").id == v.id
    assert check(reg, "minilm@bf16").ok  # the genuine one still passes


def test_check_of_a_version_not_derived(reg: Registry, minilm: Version) -> None:
    with pytest.raises(UsageError, match="records no derived_from") as e:
        check(reg, "minilm@v1")
    assert e.value.hint


def test_a_caller_cannot_replace_captured_lineage(reg: Registry, tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    st.write(d / "model.safetensors", {"w": st.Tensor("F32", np.ones((2, 2), np.float32))})
    with pytest.raises(UsageError, match="env"):
        reg.commit(d, model="m", lineage={"env": {"python": "forged"}})
    assert reg.models() == []
