"""A derivation in `log --graph` (the derived version hangs off its source, marked with
its recipe) and in `diff` (recipe, and the error over every tensor: max abs, RMS,
relative; an int8 weight compared dequantized)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from modelvc.derive import derive
from modelvc.registry import Registry
from tests.cli.test_cli import run
from tests.conftest import write_model


def test_log_graph_marks_derived_versions(tmp_path: Path) -> None:
    run(["init"], tmp_path)
    write_model(tmp_path / "m.safetensors", 0)
    run(["commit", "m.safetensors", "--model", "m", "-m", "trained"], tmp_path)
    run(["derive", "m@v1", "prune", "--to", "sparse", "-p", "sparsity=0.5"], tmp_path)
    run(["derive", "m@v1", "cast", "--to", "bf16"], tmp_path)
    lines = run(["log", "m", "--all", "--graph"], tmp_path).stdout.splitlines()
    drawn = [re.sub(r"\s+\d{4}-.*", "", ln).rstrip() for ln in lines]
    # Both derived versions hang off v1, each marked with its recipe and parameters.
    # The mark comes last, so the columns stay in line; the lines fit 80 columns.
    assert re.match(r"^\* v3 ", drawn[0]), drawn
    assert lines[0].endswith(" [cast of v1 dtype=bf16]"), lines
    assert re.match(r"^\| \* v2 ", drawn[1]), drawn
    assert lines[1].endswith(" [prune of v1 sparsity=0.5]"), lines  # unset options left out
    assert len({ln.index(" 20") - ln.index(" v") for ln in lines if "*" in ln}) == 1, lines
    assert max(map(len, lines)) <= 80, lines
    assert drawn[2] == "|/"
    assert re.match(r"^\* v1 ", drawn[3]), drawn

    d = json.loads(run(["diff", "m@v1", "m@v2", "--json"], tmp_path).stdout)
    assert d["derivation"] == {"recipe": "prune", "params": {"sparsity": 0.5, "exclude": ""},
                               "source": "m@v1", "derived": "m@v2", "reversed": False}
    a = load_file(str(tmp_path / "m.safetensors"))
    tmp = tmp_path / "co"
    run(["checkout", "m@v2", str(tmp)], tmp_path)
    b = load_file(str(next(tmp.rglob("*.safetensors"))))
    floats = sorted(k for k in a if a[k].dtype.kind == "f")  # the summary is over floats
    diffs = np.concatenate([(b[k].astype(np.float64) - a[k]).ravel() for k in floats])
    refs = np.concatenate([a[k].astype(np.float64).ravel() for k in floats])
    err = d["error"]
    assert err["max_abs"] == pytest.approx(np.abs(diffs).max())
    assert err["rms"] == pytest.approx(np.sqrt(np.mean(diffs ** 2)))
    assert err["rel_l2"] == pytest.approx(np.linalg.norm(diffs) / np.linalg.norm(refs))
    for t in d["tensors"]:
        x = a[t["name"]].astype(np.float64)
        dt = b[t["name"]] - x
        assert t["rms"] == pytest.approx(np.sqrt(np.mean(dt ** 2)))
    # Diffed the other way round, it is still recognised.
    back = json.loads(run(["diff", "m@v2", "m@v1", "--json"], tmp_path).stdout)
    assert back["derivation"]["reversed"] is True
    human = run(["diff", "m@v1", "m@v3"], tmp_path).stdout
    assert "derived: m@v3 is cast of m@v1 (dtype=bf16)" in human
    assert re.search(r"error: max\|d\| \S+  rms \S+  rel_l2 \S+ \(\d+ tensors, \d+ values\)",
                     human)
    assert max(map(len, human.splitlines())) <= 80, human
    # Versions not derived one from the other: no derivation, no summary.
    plain = json.loads(run(["diff", "m@v2", "m@v3", "--json"], tmp_path).stdout)
    assert plain["derivation"] is None and plain["error"] is None


def test_diff_compares_int8_weights_dequantized(reg: Registry, tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=37)
    BertModel(cfg).save_pretrained(tmp_path / "bert")
    reg.commit(tmp_path / "bert", model="tiny")
    derive(reg, "tiny@v1", "quantize-dynamic", to="int8")
    per = reg.resolve("tiny@int8").lineage["derived_from"]["stats"]["per_tensor"]
    d = reg.diff("tiny@v1", "tiny@int8")
    by = {t.name: t for t in d.tensors}
    assert set(per) <= set(by)
    for name, s in per.items():
        t = by[name]
        assert t.dequantized and t.old_dtype == "F32" and t.new_dtype == "I8"
        assert t.max_abs == pytest.approx(s["max_abs_error"])
        assert t.max_abs <= s["scale"] / 2 * (1 + 1e-4)  # half a step (scale kept as F32)
    assert by[f"{next(iter(per))}_scale"].status == "added"
    assert d.error is not None and d.error["max_abs"] == pytest.approx(
        max(s["max_abs_error"] for s in per.values()))
