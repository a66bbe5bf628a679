"""Real model files: a tiny BERT (sharded and not), MiniLM, scikit-learn ONNX, a pickle."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest

from modelvc.registry import Registry
from tests.conftest import MINILM


def _same_tree(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


def _tiny_bert(seed: int) -> object:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, vocab_size=99, max_position_embeddings=64)
    return BertModel(cfg)


def test_tiny_bert_fine_tune_sharded_and_reloaded(reg: Registry, tmp_path: Path) -> None:
    import torch
    from transformers import BertModel

    model = _tiny_bert(0)
    model.save_pretrained(tmp_path / "v1")  # type: ignore[attr-defined]
    # A real optimizer step on every weight, then a sharded save.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)  # type: ignore[attr-defined]
    out = model(input_ids=torch.randint(0, 99, (4, 16)))  # type: ignore[operator]
    out.last_hidden_state.pow(2).mean().backward()
    opt.step()
    model.save_pretrained(tmp_path / "v2", max_shard_size="50KB")  # type: ignore[attr-defined]
    assert (tmp_path / "v2" / "model.safetensors.index.json").exists()
    v1 = reg.commit(tmp_path / "v1", model="bert", metrics={"loss": 1.0})
    v2 = reg.commit(tmp_path / "v2", model="bert", metrics={"loss": 0.9})
    assert v2.parents == [v1.id]
    d = reg.diff("bert@v1", "bert@v2")
    assert "model.safetensors" in d.files_removed
    assert "model.safetensors.index.json" in d.files_added
    # Tensors moved to shards are matched by name for deltas; all changed a little.
    changed = [t for t in d.tensors if t.status == "changed"]
    assert len(changed) >= 10
    assert all(t.max_abs is not None and t.max_abs <= 2e-3 for t in changed)  # one step, lr 1e-3
    for ref, src in (("bert@v1", "v1"), ("bert@v2", "v2")):
        dest = tmp_path / f"co-{src}"
        reg.checkout(ref, dest)
        _same_tree(tmp_path / src, dest)
    reloaded = BertModel.from_pretrained(tmp_path / "co-v2")
    for (n, p), (_, q) in zip(model.named_parameters(), reloaded.named_parameters(),  # type: ignore[attr-defined]
                              strict=True):
        assert torch.equal(p, q), n


def test_minilm_commit_diff_checkout(reg: Registry, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    v1 = reg.commit(MINILM, model="minilm", message="as shipped")
    tensors = load_file(str(MINILM / "model.safetensors"))
    rng = np.random.default_rng(0)
    name = "encoder.layer.5.output.dense.weight"
    tensors[name] = tensors[name] + rng.standard_normal(tensors[name].shape).astype(
        np.float32) * np.float32(1e-4)
    ft = tmp_path / "ft"
    ft.mkdir()
    for p in MINILM.rglob("*"):
        if p.is_file() and p.name != "model.safetensors":
            (ft / p.relative_to(MINILM)).parent.mkdir(parents=True, exist_ok=True)
            (ft / p.relative_to(MINILM)).write_bytes(p.read_bytes())
    save_file(tensors, str(ft / "model.safetensors"), metadata={"format": "pt"})
    v2 = reg.commit(ft, model="minilm", message="one layer")
    # One changed layer of ~100 tensors: far less than 6% of raw is stored.
    assert v2.stored_size < 0.06 * v2.raw_size
    d = reg.diff("minilm@v1", "minilm@v2")
    assert [t.name for t in d.tensors] == [name]
    assert d.tensors[0].changed_fraction is not None and d.tensors[0].changed_fraction > 0.9
    assert d.files_changed == ["model.safetensors"]
    reg.checkout("minilm@v1", tmp_path / "co1")
    _same_tree(MINILM, tmp_path / "co1")
    reg.checkout("minilm@v2", tmp_path / "co2")
    _same_tree(ft, tmp_path / "co2")
    assert v1.raw_size == sum(p.stat().st_size for p in MINILM.rglob("*") if p.is_file())


def test_sklearn_onnx_versions(reg: Registry, tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32) / 16
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=5, random_state=0)
    paths = []
    for epoch in range(3):
        clf.partial_fit(x, y, classes=np.arange(10))
        p = tmp_path / f"e{epoch}.onnx"
        p.write_bytes(to_onnx(clf, x[:1]).SerializeToString())
        paths.append(p)
        reg.commit(p, model="digits", metrics={"acc": float(clf.score(x, y))})
    m = reg.manifest("digits@v3")
    assert m.files[0].format == "onnx"
    assert len(list(m.files[0].tensors())) >= 4  # coefficients and intercepts
    d = reg.diff("digits@v1", "digits@v3")
    assert d.tensors and all(t.status == "changed" for t in d.tensors)
    for i, p in enumerate(paths):
        out = tmp_path / f"co{i}.onnx"
        reg.checkout(f"digits@v{i + 1}", out)
        assert out.read_bytes() == p.read_bytes()
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "co2.onnx"))
    labels = sess.run(None, {sess.get_inputs()[0].name: x[:20]})[0]
    assert (labels == clf.predict(x[:20])).all()


def test_pickled_checkpoint_is_stored_opaque(reg: Registry, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    import torch

    torch.save({"w": torch.arange(300000, dtype=torch.float32)}, tmp_path / "ckpt.pt")
    # Nothing in modelvc may unpickle: make any attempt fail loudly.
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("modelvc unpickled a file")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    reg.commit(tmp_path / "ckpt.pt", model="pt")
    m = reg.manifest("pt@v1")
    assert m.files[0].format == "pickle"
    assert not list(m.files[0].tensors())
    reg.checkout("pt@v1", tmp_path / "out.pt")
    assert (tmp_path / "out.pt").read_bytes() == (tmp_path / "ckpt.pt").read_bytes()
